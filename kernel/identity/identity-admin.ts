/**
 * The admin API's identity requests (reference §5.4 style): `IdentityLink`, `IdentityUnlink`, `IdentityList`, on
 * `astrid.v1.admin.identity.{link,unlink,list}`. The admin router authorises the caller (the capability in
 * `IDENTITY_ADMIN_METHODS`), parses `params` with the schema beside each handler, audits, and sends back what the
 * handler returns as `{request_id, status, data}`; a handler's AstridError becomes the `Error` reply.
 */
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { DisplayNameSchema, PlatformSchema, PlatformUserIdSchema, PrincipalIdSchema } from "../../protocol/identity-names";
import { MAX_LIST_LIMIT, type IdentityLink, type IdentityLinks, type LinkPage, type ResolvedIdentity } from "./identity-links";

/** `IdentityLink` params: link a platform user to a principal (method `admin`), replacing any link it had. */
export const IdentityLinkParamsSchema = z.strictObject({
  platform: PlatformSchema,
  platform_user_id: PlatformUserIdSchema,
  principal: PrincipalIdSchema,
  display_name: DisplayNameSchema.optional(),
});
/** `IdentityLink` params, parsed. */
export type IdentityLinkParams = z.infer<typeof IdentityLinkParamsSchema>;

/** `IdentityUnlink` params. */
export const IdentityUnlinkParamsSchema = z.strictObject({
  platform: PlatformSchema,
  platform_user_id: PlatformUserIdSchema,
});
/** `IdentityUnlink` params, parsed. */
export type IdentityUnlinkParams = z.infer<typeof IdentityUnlinkParamsSchema>;

/** `IdentityList` params: all links, or one platform's and/or one principal's, a page at a time. */
export const IdentityListParamsSchema = z.strictObject({
  platform: PlatformSchema.optional(),
  principal: PrincipalIdSchema.optional(),
  /** `next_cursor` of the previous page. */
  cursor: z.string().max(4096).optional(),
  limit: z.number().int().min(1).max(MAX_LIST_LIMIT).optional(),
});
/** `IdentityList` params, parsed. */
export type IdentityListParams = z.infer<typeof IdentityListParamsSchema>;

/** What the handlers need. */
export interface IdentityAdminDeps {
  links: IdentityLinks;
  /** Whether a principal exists (has a profile); when given, linking to one that does not is ASTRID_ERR_PRINCIPAL_NOT_FOUND. */
  principalExists?: (principal: string) => Promise<boolean>;
}

/** `IdentityLink`'s data: the link as stored, and what it replaced. */
export type IdentityLinkData = IdentityLink & { replaced?: ResolvedIdentity };

/** `IdentityUnlink`'s data: the link that was removed. */
export type IdentityUnlinkData = IdentityLink & { unlinked: true };

/** Links a platform user to a principal on an admin's word (method `admin`). */
export async function identityLink(deps: IdentityAdminDeps, params: IdentityLinkParams): Promise<IdentityLinkData> {
  if (deps.principalExists && !(await deps.principalExists(params.principal))) {
    throw new AstridError("ASTRID_ERR_PRINCIPAL_NOT_FOUND", `principal ${params.principal} does not exist (no profile); create it first (AgentCreate)`);
  }
  const { link, previous } = await deps.links.link(params.platform, params.platform_user_id, params.principal, "admin", params.display_name);
  return previous === undefined ? link : { ...link, replaced: { principal: previous.principal, method: previous.method } };
}

/** Removes a platform user's link; ASTRID_ERR_NOT_FOUND when it has none. */
export async function identityUnlink(deps: IdentityAdminDeps, params: IdentityUnlinkParams): Promise<IdentityUnlinkData> {
  const removed = await deps.links.unlink(params.platform, params.platform_user_id);
  if (removed === undefined) {
    throw new AstridError("ASTRID_ERR_NOT_FOUND", `${params.platform} user ${JSON.stringify(params.platform_user_id)} has no identity link`);
  }
  return { ...removed, unlinked: true };
}

/** One page of links; pass `next_cursor` back as `cursor` for the next. */
export function identityList(deps: IdentityAdminDeps, params: IdentityListParams): Promise<LinkPage> {
  return deps.links.list(params);
}

/** One identity method as the admin router dispatches it. */
export interface IdentityAdminMethod<P, D> {
  /** The capability the caller must hold (reference §8.3 grammar). */
  capability: string;
  /** The conventional topic after `astrid.v1.admin.` (the reply goes to `astrid.v1.admin.response.<same>`). */
  topicSuffix: string;
  /** The reply's `status` on success. */
  status: string;
  schema: z.ZodType<P>;
  handle(deps: IdentityAdminDeps, params: P): Promise<D>;
  /** The principal the request is about, for the audit entry's `target_principal`. */
  targetPrincipal(params: P): string | undefined;
}

/** The three identity methods, by `method` name. */
export const IDENTITY_ADMIN_METHODS = {
  IdentityLink: {
    capability: "identity:link",
    topicSuffix: "identity.link",
    status: "Success",
    schema: IdentityLinkParamsSchema,
    handle: identityLink,
    targetPrincipal: (p) => p.principal,
  } satisfies IdentityAdminMethod<IdentityLinkParams, IdentityLinkData>,
  IdentityUnlink: {
    capability: "identity:unlink",
    topicSuffix: "identity.unlink",
    status: "Success",
    schema: IdentityUnlinkParamsSchema,
    handle: identityUnlink,
    targetPrincipal: () => undefined,
  } satisfies IdentityAdminMethod<IdentityUnlinkParams, IdentityUnlinkData>,
  IdentityList: {
    capability: "identity:list",
    topicSuffix: "identity.list",
    status: "IdentityList",
    schema: IdentityListParamsSchema,
    handle: identityList,
    targetPrincipal: (p) => p.principal,
  } satisfies IdentityAdminMethod<IdentityListParams, LinkPage>,
} as const;

/** An identity method name. */
export type IdentityAdminMethodName = keyof typeof IDENTITY_ADMIN_METHODS;

/** True for the name of an identity method. */
export function isIdentityAdminMethod(method: unknown): method is IdentityAdminMethodName {
  return typeof method === "string" && Object.prototype.hasOwnProperty.call(IDENTITY_ADMIN_METHODS, method);
}

/**
 * Parses and runs one identity request: `params` from the wire (`unknown`), the handler's data back. Throws
 * ASTRID_ERR_REQUEST_INVALID naming the field when `params` do not fit (absent `params` count as `{}`).
 */
export async function runIdentityAdmin(deps: IdentityAdminDeps, method: IdentityAdminMethodName, params: unknown): Promise<unknown> {
  const spec = IDENTITY_ADMIN_METHODS[method] as IdentityAdminMethod<unknown, unknown>;
  const parsed = spec.schema.safeParse(params ?? {});
  if (!parsed.success) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${method} params are invalid: ${z.prettifyError(parsed.error).replace(/\n/g, " ")}`);
  }
  return spec.handle(deps, parsed.data);
}
