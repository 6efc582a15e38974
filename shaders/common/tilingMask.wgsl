// The tiling-mask on the GPU, shared by the prefill kernels. src/tiling/mask.ts is
// its specification (and is tested against the dense mask); this is the same
// arithmetic. Needs, from the including kernel: `params` (struct Params of
// prefillParams.wgsl), `mMask`, and the consts BLOCK_KV and MASK_BLOCK.

// The mask's parameters, read from `params` once per invocation: read there per key
// block, they were storage loads on the path from each span's barrier to its softmax.
struct MaskParams {
  causal: bool,
  hasWindow: bool,
  window: i32,
}

fn maskParams() -> MaskParams {
  return MaskParams(params.causal != 0u, params.hasWindow != 0u, i32(params.window));
}

const EDGE_NONE: i32 = 0;
const EDGE_CROSS: i32 = 1;
const MASK_WIDTH: u32 = 3u * MASK_BLOCK;

// The key blocks [x, y) a query block must visit: every block outside is empty
// for all of its rows, every block inside has at least one allowed key.
fn keyBlockRange(mp: MaskParams, qStart: u32, rows: u32, kvLen: u32, offset: i32) -> vec2u {
  var kBegin = 0;
  var kEnd = i32(kvLen);
  if (mp.causal) { kEnd = min(kEnd, i32(qStart + rows) + offset); }
  if (mp.hasWindow) { kBegin = max(0, i32(qStart) + offset - mp.window + 1); }
  if (kEnd <= kBegin) { return vec2u(0u, 0u); }
  return vec2u(u32(kBegin) / BLOCK_KV, (u32(kEnd) + BLOCK_KV - 1u) / BLOCK_KV);
}

// Half-plane j − alpha·i ≤ bound (upper) or ≥ bound (lower) over the block
// [qStart, qStart+rows) × [kStart, kStart+BLOCK_KV): (EDGE_NONE, 0) when it masks
// nothing there, else (EDGE_CROSS, M-mask column offset). Blocks it masks whole
// lie outside keyBlockRange and never get here.
fn classifyEdge(alpha: i32, upper: bool, bound: i32, qStart: i32, rows: i32, kStart: i32) -> vec2i {
  let uMin = kStart - alpha * (qStart + rows - 1);
  let uMax = kStart + i32(BLOCK_KV) - 1 - alpha * qStart;
  if (upper) {
    if (uMax <= bound) { return vec2i(EDGE_NONE, 0); }
    return vec2i(EDGE_CROSS, kStart - alpha * qStart - bound - 1 + i32(MASK_BLOCK));
  }
  if (uMin >= bound) { return vec2i(EDGE_NONE, 0); }
  return vec2i(EDGE_CROSS, kStart - alpha * qStart - bound + i32(MASK_BLOCK));
}

// The edges crossing one key block: key length, causal diagonal, window start.
struct BlockEdges {
  len: vec2i,
  causal: vec2i,
  window: vec2i,
  // False for full blocks: no mask is applied at all.
  partial: bool,
}

fn blockEdges(mp: MaskParams, qStart: u32, rows: u32, kStart: u32, kvLen: u32, offset: i32) -> BlockEdges {
  var e: BlockEdges;
  e.len = classifyEdge(0, true, i32(kvLen) - 1, i32(qStart), i32(rows), i32(kStart));
  e.causal = vec2i(EDGE_NONE, 0);
  e.window = vec2i(EDGE_NONE, 0);
  if (mp.causal) { e.causal = classifyEdge(1, true, offset, i32(qStart), i32(rows), i32(kStart)); }
  if (mp.hasWindow) { e.window = classifyEdge(1, false, offset - mp.window + 1, i32(qStart), i32(rows), i32(kStart)); }
  e.partial = e.len.x == EDGE_CROSS || e.causal.x == EDGE_CROSS || e.window.x == EDGE_CROSS;
  return e;
}

// Whether (row, col) of a partial block is masked: the OR of its B-mask windows.
fn maskedAt(e: BlockEdges, row: u32, col: u32) -> bool {
  let c = i32(col);
  var masked = false;
  if (e.len.x == EDGE_CROSS) { masked = masked || mMask[u32(c + e.len.y)] == 1u; }
  if (e.causal.x == EDGE_CROSS) { masked = masked || mMask[row * MASK_WIDTH + u32(c + e.causal.y)] == 1u; }
  if (e.window.x == EDGE_CROSS) { masked = masked || mMask[row * MASK_WIDTH + u32(c + e.window.y)] == 0u; }
  return masked;
}
