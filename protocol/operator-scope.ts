/** The KV scope `astrid kv` uses unless told otherwise: the operator's own namespace of principal `default`. */
export const OPERATOR_KV_SCOPE = "default:operator";
