// FastAttention prefill: FlashAttention-2 with two-level tiling and the tiling-mask.
//
// Grid: (query blocks, query heads, batch). A workgroup keeps BLOCK_Q query rows
// (pre-scaled by scale·log2 e, so softmax uses exp2) in workgroup memory and
// streams the keys of its non-empty key blocks BLOCK_KV rows at a time (level 1),
// double-buffered when KV_STAGES = 2. Each invocation owns a register tile of
// ROWS_PER_THREAD rows × COLS_PER_THREAD scores and ROWS_PER_THREAD ×
// DIMS_PER_THREAD output accumulators (level 2). Online softmax keeps a running
// max and sum per row; the output is divided by the sum once, at the end.
//
// Empty key blocks are never visited (the loop range is computed), full blocks
// apply no mask, partial blocks read their B-mask from the M-mask at offsets
// computed per block (src/tiling/mask.ts is the specification of this arithmetic).
//
// The constants below are defaults: src/runtime/wgsl.ts specializes them per pipeline.

const HEAD_DIM: u32 = 64u;
const BLOCK_Q: u32 = 32u;
const BLOCK_KV: u32 = 32u;
const ROWS_PER_THREAD: u32 = 2u;
const THREADS_PER_ROW: u32 = 16u;
const KV_STAGES: u32 = 2u;
const MASK_BLOCK: u32 = 32u;

const THREADS: u32 = (BLOCK_Q / ROWS_PER_THREAD) * THREADS_PER_ROW;
const COLS_PER_THREAD: u32 = BLOCK_KV / THREADS_PER_ROW;
const DIMS_PER_THREAD: u32 = (HEAD_DIM + THREADS_PER_ROW - 1u) / THREADS_PER_ROW;
const K_PITCH: u32 = HEAD_DIM + 1u;
const MASK_WIDTH: u32 = 3u * MASK_BLOCK;
// Finite stand-in for −∞: exp2(x − m) stays well defined for fully masked rows.
const NEG_BIG: f32 = -1.0e30;
const MASKED_BELOW: f32 = -1.0e29;

const EDGE_NONE: i32 = 0;
const EDGE_CROSS: i32 = 1;

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

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read> mMask: array<u32>;

var<workgroup> qTile: array<f32, BLOCK_Q * HEAD_DIM>;
var<workgroup> kTile: array<f32, KV_STAGES * BLOCK_KV * K_PITCH>;
var<workgroup> vTile: array<f32, KV_STAGES * BLOCK_KV * HEAD_DIM>;
var<workgroup> pTile: array<f32, BLOCK_Q * BLOCK_KV>;
var<workgroup> rowScratch: array<f32, BLOCK_Q * THREADS_PER_ROW>;

// Half-plane j − alpha·i ≤ bound (upper) or ≥ bound (lower) over the block
// [qStart, qStart+rows) × [kStart, kStart+BLOCK_KV): (EDGE_NONE, 0) when it masks
// nothing there, else (EDGE_CROSS, M-mask column offset). Blocks it masks whole
// lie outside the loop range and never get here.
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

// Stage keys [kStart, kStart + BLOCK_KV) into buffer `stage`; keys at or past
// kvLen are zero so that uninitialised cache slots cannot leak NaN into P·V.
fn stageKV(tid: u32, stage: u32, kStart: u32, kvLen: u32, kBase: u32, vBase: u32) {
  for (var e = tid; e < BLOCK_KV * HEAD_DIM; e += THREADS) {
    let r = e / HEAD_DIM;
    let d = e % HEAD_DIM;
    let key = kStart + r;
    var kx = 0.0;
    var vx = 0.0;
    if (key < kvLen) {
      kx = k[kBase + key * params.kSeq + d];
      vx = v[vBase + key * params.vSeq + d];
    }
    kTile[(stage * BLOCK_KV + r) * K_PITCH + d] = kx;
    vTile[(stage * BLOCK_KV + r) * HEAD_DIM + d] = vx;
  }
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let b = wg.z;
  let hq = wg.y;
  let hkv = hq / params.groupSize;
  let seqQ = params.seqQ;
  let kvLen = min(params.kvLen[b], params.seqK);
  let qStart = wg.x * BLOCK_Q;
  let rows = min(BLOCK_Q, seqQ - qStart);
  let offset = i32(kvLen) - i32(seqQ);
  let rowGroup = tid / THREADS_PER_ROW;
  let lane = tid % THREADS_PER_ROW;
  let qBase = b * params.qBatch + hq * params.qHead;
  let kBase = b * params.kBatch + hkv * params.kHead;
  let vBase = b * params.vBatch + hkv * params.vHead;
  let oBase = b * params.oBatch + hq * params.oHead;

  for (var e = tid; e < BLOCK_Q * HEAD_DIM; e += THREADS) {
    let r = e / HEAD_DIM;
    var x = 0.0;
    if (r < rows) { x = q[qBase + (qStart + r) * params.qSeq + e % HEAD_DIM] * params.scaleLog2; }
    qTile[e] = x;
  }

  // Key blocks outside [firstBlock, endBlock) are empty for every row of this block.
  var kBegin = 0;
  var kEnd = i32(kvLen);
  if (params.causal != 0u) { kEnd = min(kEnd, i32(qStart + rows) + offset); }
  if (params.hasWindow != 0u) { kBegin = max(0, i32(qStart) + offset - i32(params.window) + 1); }
  var firstBlock = 0u;
  var endBlock = 0u;
  if (kEnd > kBegin) {
    firstBlock = u32(kBegin) / BLOCK_KV;
    endBlock = (u32(kEnd) + BLOCK_KV - 1u) / BLOCK_KV;
  }

  var m: array<f32, ROWS_PER_THREAD>;
  var l: array<f32, ROWS_PER_THREAD>;
  var acc: array<f32, ROWS_PER_THREAD * DIMS_PER_THREAD>;
  var s: array<f32, ROWS_PER_THREAD * COLS_PER_THREAD>;
  for (var i = 0u; i < ROWS_PER_THREAD; i++) { m[i] = NEG_BIG; l[i] = 0.0; }
  for (var i = 0u; i < ROWS_PER_THREAD * DIMS_PER_THREAD; i++) { acc[i] = 0.0; }

  if (KV_STAGES == 2u && firstBlock < endBlock) { stageKV(tid, 0u, firstBlock * BLOCK_KV, kvLen, kBase, vBase); }

  for (var kb = firstBlock; kb < endBlock; kb++) {
    let kStart = kb * BLOCK_KV;
    var stage = 0u;
    if (KV_STAGES == 1u) {
      workgroupBarrier(); // everyone is done with the previous span
      stageKV(tid, 0u, kStart, kvLen, kBase, vBase);
    } else {
      stage = (kb - firstBlock) % 2u;
    }
    workgroupBarrier(); // span kb is staged; P and the scratch of step kb-1 are consumed
    if (KV_STAGES == 2u && kb + 1u < endBlock) {
      // The other buffer was last read before the barrier above.
      stageKV(tid, 1u - stage, kStart + BLOCK_KV, kvLen, kBase, vBase);
    }

    // S = (Q·scale·log2 e) Kᵀ for this invocation's register tile.
    for (var i = 0u; i < ROWS_PER_THREAD * COLS_PER_THREAD; i++) { s[i] = 0.0; }
    let kOff = stage * BLOCK_KV * K_PITCH;
    for (var d = 0u; d < HEAD_DIM; d++) {
      var qv: array<f32, ROWS_PER_THREAD>;
      for (var i = 0u; i < ROWS_PER_THREAD; i++) { qv[i] = qTile[(rowGroup * ROWS_PER_THREAD + i) * HEAD_DIM + d]; }
      for (var j = 0u; j < COLS_PER_THREAD; j++) {
        let kx = kTile[kOff + (lane + j * THREADS_PER_ROW) * K_PITCH + d];
        for (var i = 0u; i < ROWS_PER_THREAD; i++) { s[i * COLS_PER_THREAD + j] = fma(qv[i], kx, s[i * COLS_PER_THREAD + j]); }
      }
    }

    // Tiling-mask: full blocks skip this entirely; partial ones OR their M-mask windows.
    let eLen = classifyEdge(0, true, i32(kvLen) - 1, i32(qStart), i32(rows), i32(kStart));
    var eCausal = vec2i(EDGE_NONE, 0);
    var eWindow = vec2i(EDGE_NONE, 0);
    if (params.causal != 0u) { eCausal = classifyEdge(1, true, offset, i32(qStart), i32(rows), i32(kStart)); }
    if (params.hasWindow != 0u) { eWindow = classifyEdge(1, false, offset - i32(params.window) + 1, i32(qStart), i32(rows), i32(kStart)); }
    if (eLen.x == EDGE_CROSS || eCausal.x == EDGE_CROSS || eWindow.x == EDGE_CROSS) {
      for (var i = 0u; i < ROWS_PER_THREAD; i++) {
        let rowBase = (rowGroup * ROWS_PER_THREAD + i) * MASK_WIDTH;
        for (var j = 0u; j < COLS_PER_THREAD; j++) {
          let c = i32(lane + j * THREADS_PER_ROW);
          var masked = false;
          if (eLen.x == EDGE_CROSS) { masked = masked || mMask[u32(c + eLen.y)] == 1u; }
          if (eCausal.x == EDGE_CROSS) { masked = masked || mMask[rowBase + u32(c + eCausal.y)] == 1u; }
          if (eWindow.x == EDGE_CROSS) { masked = masked || mMask[rowBase + u32(c + eWindow.y)] == 0u; }
          if (masked) { s[i * COLS_PER_THREAD + j] = NEG_BIG; }
        }
      }
    }

    // Row max across the THREADS_PER_ROW invocations of a row group.
    for (var i = 0u; i < ROWS_PER_THREAD; i++) {
      var mx = NEG_BIG;
      for (var j = 0u; j < COLS_PER_THREAD; j++) { mx = max(mx, s[i * COLS_PER_THREAD + j]); }
      rowScratch[(rowGroup * ROWS_PER_THREAD + i) * THREADS_PER_ROW + lane] = mx;
    }
    workgroupBarrier();
    for (var i = 0u; i < ROWS_PER_THREAD; i++) {
      let r = rowGroup * ROWS_PER_THREAD + i;
      var mNew = m[i];
      for (var t = 0u; t < THREADS_PER_ROW; t++) { mNew = max(mNew, rowScratch[r * THREADS_PER_ROW + t]); }
      let alpha = exp2(m[i] - mNew);
      m[i] = mNew;
      var sum = 0.0;
      for (var j = 0u; j < COLS_PER_THREAD; j++) {
        let x = s[i * COLS_PER_THREAD + j];
        let p = select(exp2(x - mNew), 0.0, x < MASKED_BELOW);
        sum += p;
        pTile[r * BLOCK_KV + lane + j * THREADS_PER_ROW] = p;
      }
      // Each invocation keeps the partial sum of its own columns; they are added once at the end.
      l[i] = l[i] * alpha + sum;
      for (var t = 0u; t < DIMS_PER_THREAD; t++) { acc[i * DIMS_PER_THREAD + t] *= alpha; }
    }
    workgroupBarrier();

    // O += P·V for this invocation's rows and head-dim columns.
    let vOff = stage * BLOCK_KV * HEAD_DIM;
    for (var kk = 0u; kk < BLOCK_KV; kk++) {
      var pv: array<f32, ROWS_PER_THREAD>;
      for (var i = 0u; i < ROWS_PER_THREAD; i++) { pv[i] = pTile[(rowGroup * ROWS_PER_THREAD + i) * BLOCK_KV + kk]; }
      for (var t = 0u; t < DIMS_PER_THREAD; t++) {
        let col = min(lane + t * THREADS_PER_ROW, HEAD_DIM - 1u);
        let vx = vTile[vOff + kk * HEAD_DIM + col];
        for (var i = 0u; i < ROWS_PER_THREAD; i++) { acc[i * DIMS_PER_THREAD + t] = fma(pv[i], vx, acc[i * DIMS_PER_THREAD + t]); }
      }
    }
  }

  // Sum the partial row sums, then rescale once. Rows that saw no key give 0.
  workgroupBarrier();
  for (var i = 0u; i < ROWS_PER_THREAD; i++) {
    rowScratch[(rowGroup * ROWS_PER_THREAD + i) * THREADS_PER_ROW + lane] = l[i];
  }
  workgroupBarrier();
  for (var i = 0u; i < ROWS_PER_THREAD; i++) {
    let r = rowGroup * ROWS_PER_THREAD + i;
    if (r >= rows) { continue; }
    var total = 0.0;
    for (var t = 0u; t < THREADS_PER_ROW; t++) { total += rowScratch[r * THREADS_PER_ROW + t]; }
    let inv = select(0.0, 1.0 / total, total > 0.0);
    for (var t = 0u; t < DIMS_PER_THREAD; t++) {
      let col = lane + t * THREADS_PER_ROW;
      if (col < HEAD_DIM) { o[oBase + (qStart + r) * params.oSeq + col] = acc[i * DIMS_PER_THREAD + t] * inv; }
    }
  }
}
