import { parseKernelRequest, responsePayload, requestIdOf } from "../../../protocol/kernel-request";

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { code: string }).code;
  }
  return "no error";
};

describe("KernelRequest parsing (reference §5.2 serde rules)", () => {
  it("accepts unit methods with params absent or null, and rejects params {}", () => {
    expect(parseKernelRequest({ method: "GetStatus" }).request).toEqual({ method: "GetStatus" });
    expect(parseKernelRequest({ method: "ListCapsules", params: null }).request).toEqual({ method: "ListCapsules" });
    expect(code(() => parseKernelRequest({ method: "GetStatus", params: {} }))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("requires params on Shutdown; {} means no reason", () => {
    expect(code(() => parseKernelRequest({ method: "Shutdown" }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(parseKernelRequest({ method: "Shutdown", params: {} }).request).toEqual({ method: "Shutdown", params: { reason: null } });
    expect(parseKernelRequest({ method: "Shutdown", params: { reason: "x" } }).request).toEqual({ method: "Shutdown", params: { reason: "x" } });
    expect(code(() => parseKernelRequest({ method: "Shutdown", params: { reason: 5 } }))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("is case-sensitive and names the valid methods for an unknown one", () => {
    expect(code(() => parseKernelRequest({ method: "getStatus" }))).toBe("ASTRID_ERR_UNKNOWN_METHOD");
    expect(() => parseKernelRequest({ method: "Nope" })).toThrow(/GetStatus, ListCapsules/);
    expect(code(() => parseKernelRequest({}))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("validates InstallCapsule and ApproveCapability params", () => {
    expect(parseKernelRequest({ method: "InstallCapsule", params: { source: "x", workspace: false } }).request.method).toBe("InstallCapsule");
    expect(code(() => parseKernelRequest({ method: "InstallCapsule", params: { source: "x" } }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(code(() => parseKernelRequest({ method: "ApproveCapability", params: { request_id: "r" } }))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("carries request_id, which must be a string", () => {
    expect(parseKernelRequest({ method: "GetStatus", request_id: "r1" }).requestId).toBe("r1");
    expect(code(() => parseKernelRequest({ method: "GetStatus", request_id: 7 }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(requestIdOf({ request_id: "r2", method: 1 })).toBe("r2");
  });

  it("wraps responses as raw_json with status/data adjacent and request_id echoed", () => {
    expect(responsePayload({ status: "Success", data: ["a"] })).toEqual({ type: "raw_json", status: "Success", data: ["a"] });
    expect(responsePayload({ status: "Error", data: "bad", code: "ASTRID_ERR_INTERNAL" }, "r")).toEqual({
      type: "raw_json", request_id: "r", status: "Error", data: "bad", code: "ASTRID_ERR_INTERNAL",
    });
  });
});
