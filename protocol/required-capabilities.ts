/**
 * The capability each management and admin method requires (reference §5.2, §5.4), in one place: the routers
 * check them, the audit log records them, the docs list them.
 */

/** Management methods (reference §5.2; the Kv* methods are ours). */
export const METHOD_CAPABILITIES: Readonly<Record<string, string>> = {
  GetStatus: "system:status",
  ListClients: "system:status",
  ListCapsules: "self:capsule:list",
  GetCommands: "self:capsule:list",
  GetCapsuleMetadata: "self:capsule:list",
  ReloadCapsules: "self:capsule:reload",
  Shutdown: "system:shutdown",
  InstallCapsule: "self:capsule:install",
  ApproveCapability: "self:approval:respond",
  KvGet: "system:kv:read",
  KvSet: "system:kv:write",
  KvList: "system:kv:read",
  KvDelete: "system:kv:write",
  SetMode: "system:mode",
  McpList: "system:mcp:read",
  McpTools: "system:mcp:read",
  McpCall: "system:mcp:call",
  RemoveCapsule: "self:capsule:remove",
  CallTool: "system:tool:call",
  VfsDiff: "system:vfs:read",
  VfsCommit: "system:vfs:write",
  VfsDiscard: "system:vfs:write",
};

/** Admin capabilities (reference §5.4). */
export const ADMIN_CAPABILITIES = {
  agentCreate: "agent:create",
  agentDelete: "agent:delete",
  agentEnable: "agent:enable",
  agentDisable: "agent:disable",
  /** Lists every principal; with only `self:agent:list` a caller sees its own entry. */
  agentList: "agent:list",
  agentListSelf: "self:agent:list",
  /** Required for every QuotaSet, the caller's own quotas included (the reference let `self:*` raise them). */
  quotaSet: "quota:set",
  quotaGet: "quota:get",
  quotaGetSelf: "self:quota:get",
  groupCreate: "group:create",
  groupDelete: "group:delete",
  groupModify: "group:modify",
  groupList: "group:list",
  capsGrant: "caps:grant",
  capsRevoke: "caps:revoke",
} as const;

/**
 * What the principal a capsule acts for must hold for the capsule's gated host calls (besides the manifest entry).
 * The `agent` group's `self:*` covers them all; `restricted` holds none. KV needs none: a capsule's KV scope is per
 * principal, the principal's own data.
 */
export const CAPSULE_HOST_CAPABILITIES = {
  fsRead: "self:fs:read",
  fsWrite: "self:fs:write",
  http: "self:net:http",
  process: "self:process:run",
  /** Every socket call: outbound TCP, lookups, the capsule's listeners, UDP (the manifest's net_* lists too). */
  netSocket: "self:net:socket",
  /** Every `mcp.*` call (the manifest must also name the server, or the capsule own it). */
  mcp: "self:mcp:use",
} as const;
