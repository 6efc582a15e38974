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

// The workgroup's query head and first query row. The grid is (query blocks,
// query heads, batch) without a causal mask and (query heads, query blocks,
// batch) with one (src/attention/flashAttentionPrefill.ts, prefillGrid); query
// blocks go last to first. GPUs start workgroups in about x-fastest order.
// Causal blocks differ in length (the last visits the most keys): heads fastest
// starts every head's longest block before any shorter one (a list-scheduling
// model of S = 4096, 32 heads × 32 blocks on 132 SMs: a 13–30% tail when each
// head's blocks run in turn, 1–2% longest first). Without the mask all blocks
// are alike, and blocks fastest keeps the workgroups in flight on few heads,
// whose K/V stay in L2. Needs the kernel's `params` and BLOCK_Q.
fn headAndQStart(wg: vec3u, groups: vec3u) -> vec2u {
  let causal = params.causal != 0u;
  let fromLast = select(wg.x, wg.y, causal);
  let last = select(groups.x, groups.y, causal) - 1u;
  let qStart = (last - fromLast) * BLOCK_Q;
  return vec2u(select(wg.y, wg.x, causal), qStart);
}
