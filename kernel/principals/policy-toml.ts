/**
 * Reading a policy file (`etc/groups.toml`, `etc/profiles/<p>.toml`): TOML, then a strict schema, with every
 * problem reported as one coded error naming the file, the line and the key — a user fixes it from the message.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import type { z } from "zod";
import { fieldLine, protoKeyPath } from "../../protocol/capsule-manifest";
import { AstridError, type ErrorCode } from "../../protocol/errors";

/** Parses `text` (the contents of `file`) against `schema`; throws `code` naming the file, line and key. */
export function parsePolicyToml<S extends z.ZodType>(text: string, file: string, schema: S, code: ErrorCode): z.output<S> {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      throw new AstridError(code, `${file}:${err.line}:${err.column}: TOML syntax error: ${err.message.split("\n")[0]}`, { cause: err });
    }
    throw new AstridError(code, `${file}: cannot parse: ${(err as Error).message}`, { cause: err });
  }
  const proto = protoKeyPath(raw);
  if (proto) throw new AstridError(code, `${file}${at(text, proto)}: key ${proto.join(".")} is not allowed (\`__proto__\` is reserved)`);
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const key = [...issue.path, issue.keys[0]!];
    throw new AstridError(code, `${file}${at(text, key)}: unknown key ${key.map(String).join(".")} (see docs/principals.md for the fields)`);
  }
  throw new AstridError(code, `${file}${at(text, issue.path)}: field ${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`);
}

function at(text: string, path: readonly PropertyKey[]): string {
  const line = fieldLine(text, path);
  return line === undefined ? "" : `:${line}`;
}
