// Parameters shared by the prefill kernels (one params-pool format for every tier).
// Strides are in vec4 units: every stride is a multiple of the head dim, hence of 4.
struct Params {
  seqQ: u32,
  seqK: u32,
  groupSize: u32,
  causal: u32,
  hasWindow: u32,
  window: u32,
  scaleLog2: f32,
  qBatch: u32, qHead: u32, qSeq: u32,
  kBatch: u32, kHead: u32, kSeq: u32,
  vBatch: u32, vHead: u32, vSeq: u32,
  oBatch: u32, oHead: u32, oSeq: u32,
  kvLen: array<u32>,
}
