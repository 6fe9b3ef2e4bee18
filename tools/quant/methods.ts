// The quantization methods by name. "carvq" is the group RVQ method (the on-disk METHOD_RVQ code,
// "rvq" in the runtime's messages); the scalar baselines are named by their bits per code. These
// names are what users type (`--method`) and what blob metadata records.
export type ScalarMethodName = "int4" | "int3" | "int2";
export type MethodName = typeof RVQ_METHOD | ScalarMethodName;

/** Bits per code of each scalar method. */
export const SCALAR_BITS: Record<ScalarMethodName, number> = { int4: 4, int3: 3, int2: 2 };

/** The group RVQ method's name (the runtime's messages call it "rvq"; users and metadata "carvq"). */
export const RVQ_METHOD = "carvq";

export const SCALAR_METHODS = Object.keys(SCALAR_BITS) as readonly ScalarMethodName[];
export const METHOD_NAMES: readonly MethodName[] = [RVQ_METHOD, ...SCALAR_METHODS];

export function isScalarMethod(method: MethodName): method is ScalarMethodName {
  return method !== RVQ_METHOD;
}
