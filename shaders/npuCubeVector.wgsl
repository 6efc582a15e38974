// The NPU emulator's attention schedules (src/npu-emu/schedules.ts) executed on
// WebGPU. A workgroup plays one AI core for one row block (BLOCK_Q query rows of
// one (batch, head)); what it does is one *phase* of one level-1 block:
//
//   QK  (Cube)   S  = Q·Kᵀ            level-2 sub-blocks of SUB_KV keys  → GM (ws)
//   SM  (Vector) P  = online softmax(S·scale, mask), α, m, l             → GM (ws)
//   PV  (Cube)   Ob = P·V             level-2 sub-blocks of SUB_KV keys  → GM (ws)
//   UPD (Vector) Oacc = Oacc·α + Ob;  last block: O = Oacc / l
//
// Every handoff goes through the global-memory workspace `ws`, and the sync that
// publishes it is the dispatch boundary. One dispatch carries up to four phases,
// each on its own slice of workgroups (workgroup_id.y picks the y-th active
// phase), so a two-level step runs the Cube stage of block i+1 and the Vector
// stage of block i *in the same dispatch*, concurrently, on different buffers
// (GM_STAGES = 2 workspaces). The host (src/npu-emu/webgpuPipeline.ts) decides
// which block each phase works on; -1 = phase idle in this dispatch.
//
// Tiling-mask (TILING_MASK = true): the row block's non-empty level-1 blocks are
// the contiguous range of src/tiling/mask.ts keyBlockRange; empty level-2
// sub-blocks are skipped, full ones get no mask, partial ones read M-mask
// windows (classifyBlock's arithmetic). Without it every block is computed and,
// when anything is masked, a dense Sq×Sk u32 mask is read for every score.
//
// Atomic counters in `stats` count what actually ran (phases, sub-blocks, score
// pairs), so the host can compare them with the emulator's task graph.

const HEAD_DIM: u32 = 32u;
const BLOCK_Q: u32 = 8u;
const BLOCK_KV: u32 = 16u;
const SUB_KV: u32 = 8u;
const VEC_ROWS: u32 = 4u;
const GM_STAGES: u32 = 1u;
const TILING_MASK: bool = true;
const MASK_BLOCK: u32 = 8u;
// Cube layout: THREADS = (BLOCK_Q / TM) row groups × COL_THREADS column lanes.
const TM: u32 = 1u;
const COL_THREADS: u32 = 8u;
const THREADS: u32 = 64u;
// Inner-dimension slice staged through workgroup memory.
const KC: u32 = 8u;

const SUBS: u32 = (BLOCK_KV + SUB_KV - 1u) / SUB_KV;
const QK_COLS: u32 = SUB_KV / COL_THREADS;
const PV_COLS: u32 = (HEAD_DIM + COL_THREADS - 1u) / COL_THREADS;
const BN: u32 = max(SUB_KV, HEAD_DIM);
const LANES: u32 = THREADS / VEC_ROWS;
const MASK_WIDTH: u32 = 3u * MASK_BLOCK;
// α of block j lives in slot j % 3: SM(j) writes it one step after QK(j) and UPD(j)
// reads it two steps later, while SM(j+1) and SM(j+2) write theirs.
const ALPHA_SLOTS: u32 = 3u;
const NEG_BIG: f32 = -1.0e30;
const MASKED_BELOW: f32 = -1.0e29;

const PHASE_QK: u32 = 0u;
const PHASE_SM: u32 = 1u;
const PHASE_PV: u32 = 2u;
const PHASE_UPD: u32 = 3u;

// stats[] indices.
const ST_QK: u32 = 0u;
const ST_SM: u32 = 1u;
const ST_PV: u32 = 2u;
const ST_UPD: u32 = 3u;
const ST_SUBS: u32 = 4u;
const ST_FULL: u32 = 5u;
const ST_PARTIAL: u32 = 6u;
const ST_PAIRS: u32 = 7u;
const ST_ZERO_ROWS: u32 = 8u;

struct Params {
  // Level-1 block (index into the row's non-empty blocks) of each phase; -1 = idle.
  qkBlock: i32, smBlock: i32, pvBlock: i32, updBlock: i32,
  seqQ: u32, seqK: u32, kvLen: u32,
  headsQ: u32, groupSize: u32, qBlocks: u32, nRows: u32,
  causal: u32, hasWindow: u32, window: u32, masked: u32,
  scaleLog2: f32,
  // Element strides.
  qBatch: u32, qHead: u32, qSeq: u32,
  kBatch: u32, kHead: u32, kSeq: u32,
  vBatch: u32, vHead: u32, vSeq: u32,
  oBatch: u32, oHead: u32, oSeq: u32,
  // Workspace regions (element offsets into ws).
  sBase: u32, pBase: u32, obBase: u32, accBase: u32, stateBase: u32, alphaBase: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
// The M-mask (TILING_MASK) or the dense Sq×Sk mask (1 = masked).
@group(0) @binding(5) var<storage, read> mask: array<u32>;
@group(0) @binding(6) var<storage, read_write> ws: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<atomic<u32>>;

var<workgroup> aT: array<f32, BLOCK_Q * KC>;
var<workgroup> bT: array<f32, KC * BN>;
var<workgroup> red: array<f32, THREADS>;

struct Row {
  r: u32,          // row block index
  b: u32,
  qBase: u32,
  kBase: u32,
  vBase: u32,
  oBase: u32,
  qStart: u32,
  rows: u32,
  firstBlock: u32, // first non-empty level-1 key block
  count: u32,      // non-empty level-1 blocks
}

struct Sub {
  kind: u32,       // 0 empty, 1 full, 2 partial
  start: u32,      // first key
  cols: u32,
  col0: u32,       // column of the sub-block inside the level-1 block
  eLen: vec2i,     // (crosses?, M-mask column offset) per constraint
  eCausal: vec2i,
  eWindow: vec2i,
}

fn rowOf(r: u32) -> Row {
  let bh = r / params.qBlocks;
  let b = bh / params.headsQ;
  let h = bh % params.headsQ;
  let hk = h / params.groupSize;
  let qStart = (r % params.qBlocks) * BLOCK_Q;
  let rows = min(BLOCK_Q, params.seqQ - qStart);
  var first = 0u;
  var count = (params.seqK + BLOCK_KV - 1u) / BLOCK_KV;
  if (TILING_MASK) {
    // keyBlockRange of src/tiling/mask.ts.
    let offset = i32(params.kvLen) - i32(params.seqQ);
    var kBegin = 0;
    var kEnd = i32(params.kvLen);
    if (params.causal != 0u) { kEnd = min(kEnd, i32(qStart + rows) + offset); }
    if (params.hasWindow != 0u) { kBegin = max(0, i32(qStart) + offset - i32(params.window) + 1); }
    if (kEnd > kBegin) {
      first = u32(kBegin) / BLOCK_KV;
      count = (u32(kEnd) + BLOCK_KV - 1u) / BLOCK_KV - first;
    } else {
      count = 0u;
    }
  }
  return Row(r, b, b * params.qBatch + h * params.qHead, b * params.kBatch + hk * params.kHead, b * params.vBatch + hk * params.vHead,
             b * params.oBatch + h * params.oHead, qStart, rows, first, count);
}

// One half-plane over the sub-block, as classifyBlock: x = 0 none, 1 crosses, 2 masks it whole.
fn edge(alpha: i32, upper: bool, bound: i32, qStart: i32, rows: i32, kStart: i32, cols: i32) -> vec2i {
  let uMin = kStart - alpha * (qStart + rows - 1);
  let uMax = kStart + cols - 1 - alpha * qStart;
  if (upper) {
    if (uMin > bound) { return vec2i(2, 0); }
    if (uMax <= bound) { return vec2i(0, 0); }
    return vec2i(1, kStart - alpha * qStart - bound - 1 + i32(MASK_BLOCK));
  }
  if (uMax < bound) { return vec2i(2, 0); }
  if (uMin >= bound) { return vec2i(0, 0); }
  return vec2i(1, kStart - alpha * qStart - bound + i32(MASK_BLOCK));
}

// Level-2 sub-block `s` of level-1 block `kb` of the row.
fn subOf(row: Row, kb: u32, s: u32) -> Sub {
  let l1Start = kb * BLOCK_KV;
  let l1End = min(l1Start + BLOCK_KV, params.seqK);
  let start = l1Start + s * SUB_KV;
  var sub = Sub(0u, start, 0u, s * SUB_KV, vec2i(0), vec2i(0), vec2i(0));
  if (start >= l1End) { return sub; }
  sub.cols = min(SUB_KV, l1End - start);
  if (!TILING_MASK) {
    sub.kind = select(1u, 2u, params.masked != 0u);
    return sub;
  }
  let offset = i32(params.kvLen) - i32(params.seqQ);
  let qs = i32(row.qStart);
  let rs = i32(row.rows);
  let ks = i32(start);
  let cs = i32(sub.cols);
  sub.eLen = edge(0, true, i32(params.kvLen) - 1, qs, rs, ks, cs);
  if (params.causal != 0u) { sub.eCausal = edge(1, true, offset, qs, rs, ks, cs); }
  if (params.hasWindow != 0u) { sub.eWindow = edge(1, false, offset - i32(params.window) + 1, qs, rs, ks, cs); }
  if (sub.eLen.x == 2 || sub.eCausal.x == 2 || sub.eWindow.x == 2) { return sub; }
  sub.kind = select(1u, 2u, sub.eLen.x == 1 || sub.eCausal.x == 1 || sub.eWindow.x == 1);
  return sub;
}

// Whether score (row i of the block, column c of the sub-block) is masked in a partial sub-block.
fn isMasked(row: Row, sub: Sub, i: u32, c: u32) -> bool {
  if (!TILING_MASK) { return mask[(row.qStart + i) * params.seqK + sub.start + c] == 1u; }
  let ci = i32(c);
  let rowBase = i * MASK_WIDTH;
  var m = false;
  if (sub.eLen.x == 1) { m = m || mask[u32(ci + sub.eLen.y)] == 1u; }
  if (sub.eCausal.x == 1) { m = m || mask[rowBase + u32(ci + sub.eCausal.y)] == 1u; }
  if (sub.eWindow.x == 1) { m = m || mask[rowBase + u32(ci + sub.eWindow.y)] == 0u; }
  return m;
}

fn sOffset(row: Row, j: u32) -> u32 { return params.sBase + ((j % GM_STAGES) * params.nRows + row.r) * BLOCK_Q * BLOCK_KV; }
fn pOffset(row: Row, j: u32) -> u32 { return params.pBase + ((j % GM_STAGES) * params.nRows + row.r) * BLOCK_Q * BLOCK_KV; }
fn obOffset(row: Row, j: u32) -> u32 { return params.obBase + ((j % GM_STAGES) * params.nRows + row.r) * BLOCK_Q * HEAD_DIM; }
fn alphaOffset(row: Row, j: u32) -> u32 { return params.alphaBase + ((j % ALPHA_SLOTS) * params.nRows + row.r) * BLOCK_Q; }

// ---- Cube: S = Q·Kᵀ, one level-2 sub-block at a time ----
fn cubeQK(row: Row, j: u32, tid: u32) {
  let kb = row.firstBlock + j;
  let sOff = sOffset(row, j);
  let rg = tid / COL_THREADS;
  let lane = tid % COL_THREADS;
  let keyEnd = min(params.kvLen, params.seqK);
  for (var s = 0u; s < SUBS; s++) {
    let sub = subOf(row, kb, s);
    if (sub.kind == 0u) { continue; }
    if (tid == 0u) {
      atomicAdd(&stats[ST_SUBS], 1u);
      atomicAdd(&stats[select(ST_FULL, ST_PARTIAL, sub.kind == 2u)], 1u);
      atomicAdd(&stats[ST_PAIRS], row.rows * sub.cols);
    }
    // Zeroed by hand: a declaration inside a loop is not re-zeroed on every backend.
    var acc: array<f32, TM * QK_COLS>;
    for (var i = 0u; i < TM * QK_COLS; i++) { acc[i] = 0.0; }
    for (var d0 = 0u; d0 < HEAD_DIM; d0 += KC) {
      for (var e = tid; e < BLOCK_Q * KC; e += THREADS) {
        let i = e / KC;
        var x = 0.0;
        if (i < row.rows) { x = q[row.qBase + (row.qStart + i) * params.qSeq + d0 + e % KC]; }
        aT[e] = x;
      }
      for (var e = tid; e < SUB_KV * KC; e += THREADS) {
        let c = e / KC;
        let key = sub.start + c;
        var x = 0.0;
        if (c < sub.cols && key < keyEnd) { x = k[row.kBase + key * params.kSeq + d0 + e % KC]; }
        bT[(e % KC) * BN + c] = x;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < KC; kk++) {
        for (var t = 0u; t < QK_COLS; t++) {
          let bv = bT[kk * BN + lane + t * COL_THREADS];
          for (var i = 0u; i < TM; i++) { acc[i * QK_COLS + t] = fma(aT[(rg * TM + i) * KC + kk], bv, acc[i * QK_COLS + t]); }
        }
      }
      workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
      let r = rg * TM + i;
      for (var t = 0u; t < QK_COLS; t++) {
        let c = lane + t * COL_THREADS;
        if (r < row.rows && c < sub.cols) { ws[sOff + r * BLOCK_KV + sub.col0 + c] = acc[i * QK_COLS + t]; }
      }
    }
  }
  if (tid == 0u) { atomicAdd(&stats[ST_QK], 1u); }
}

// ---- Vector: scale, mask, online softmax over the level-1 block, VEC_ROWS rows per pass ----
fn vectorSM(row: Row, j: u32, tid: u32) {
  let kb = row.firstBlock + j;
  let sOff = sOffset(row, j);
  let pOff = pOffset(row, j);
  let aOff = alphaOffset(row, j);
  let g = tid / LANES;
  let lane = tid % LANES;
  for (var r0 = 0u; r0 < BLOCK_Q; r0 += VEC_ROWS) {
    let i = r0 + g;
    let valid = g < VEC_ROWS && i < row.rows;
    var mx = NEG_BIG;
    if (valid) {
      for (var s = 0u; s < SUBS; s++) {
        let sub = subOf(row, kb, s);
        if (sub.kind == 0u) { continue; }
        for (var c = lane; c < sub.cols; c += LANES) {
          var x = ws[sOff + i * BLOCK_KV + sub.col0 + c] * params.scaleLog2;
          if (sub.kind == 2u && isMasked(row, sub, i, c)) { x = NEG_BIG; }
          ws[pOff + i * BLOCK_KV + sub.col0 + c] = x;
          mx = max(mx, x);
        }
      }
    }
    red[tid] = mx;
    workgroupBarrier();
    var rowMax = NEG_BIG;
    if (g < VEC_ROWS) { for (var t = 0u; t < LANES; t++) { rowMax = max(rowMax, red[g * LANES + t]); } }
    workgroupBarrier();
    let st = params.stateBase + (row.r * BLOCK_Q + i) * 2u;
    var mOld = NEG_BIG;
    var lOld = 0.0;
    if (valid && j > 0u) { mOld = ws[st]; lOld = ws[st + 1u]; }
    let mNew = max(mOld, rowMax);
    var sum = 0.0;
    if (valid) {
      for (var s = 0u; s < SUBS; s++) {
        let sub = subOf(row, kb, s);
        if (sub.kind == 0u) { continue; }
        for (var c = lane; c < sub.cols; c += LANES) {
          let at = pOff + i * BLOCK_KV + sub.col0 + c;
          let x = ws[at];
          let p = select(exp2(x - mNew), 0.0, x < MASKED_BELOW);
          ws[at] = p;
          sum += p;
        }
      }
    }
    red[tid] = sum;
    workgroupBarrier();
    if (valid && lane == 0u) {
      var total = 0.0;
      for (var t = 0u; t < LANES; t++) { total += red[g * LANES + t]; }
      let alpha = exp2(mOld - mNew);
      ws[st] = mNew;
      ws[st + 1u] = lOld * alpha + total;
      ws[aOff + i] = alpha;
    }
    workgroupBarrier();
  }
  if (tid == 0u) { atomicAdd(&stats[ST_SM], 1u); }
}

// ---- Cube: Ob = P·V, one level-2 sub-block of keys at a time ----
fn cubePV(row: Row, j: u32, tid: u32) {
  let kb = row.firstBlock + j;
  let pOff = pOffset(row, j);
  let obOff = obOffset(row, j);
  let rg = tid / COL_THREADS;
  let lane = tid % COL_THREADS;
  let keyEnd = min(params.kvLen, params.seqK);
  var acc: array<f32, TM * PV_COLS>;
  for (var s = 0u; s < SUBS; s++) {
    let sub = subOf(row, kb, s);
    if (sub.kind == 0u) { continue; }
    for (var c0 = 0u; c0 < sub.cols; c0 += KC) {
      for (var e = tid; e < BLOCK_Q * KC; e += THREADS) {
        let i = e / KC;
        let c = c0 + e % KC;
        var x = 0.0;
        if (i < row.rows && c < sub.cols) { x = ws[pOff + i * BLOCK_KV + sub.col0 + c]; }
        aT[e] = x;
      }
      for (var e = tid; e < KC * HEAD_DIM; e += THREADS) {
        let kk = e / HEAD_DIM;
        let key = sub.start + c0 + kk;
        var x = 0.0;
        // Keys past kvLen have P = 0; zeroing V keeps uninitialised rows from turning 0·NaN into NaN.
        if (c0 + kk < sub.cols && key < keyEnd) { x = v[row.vBase + key * params.vSeq + e % HEAD_DIM]; }
        bT[kk * BN + e % HEAD_DIM] = x;
      }
      workgroupBarrier();
      for (var kk = 0u; kk < KC; kk++) {
        for (var t = 0u; t < PV_COLS; t++) {
          let col = min(lane + t * COL_THREADS, HEAD_DIM - 1u);
          let bv = bT[kk * BN + col];
          for (var i = 0u; i < TM; i++) { acc[i * PV_COLS + t] = fma(aT[(rg * TM + i) * KC + kk], bv, acc[i * PV_COLS + t]); }
        }
      }
      workgroupBarrier();
    }
  }
  for (var i = 0u; i < TM; i++) {
    let r = rg * TM + i;
    for (var t = 0u; t < PV_COLS; t++) {
      let col = lane + t * COL_THREADS;
      if (r < row.rows && col < HEAD_DIM) { ws[obOff + r * HEAD_DIM + col] = acc[i * PV_COLS + t]; }
    }
  }
  if (tid == 0u) { atomicAdd(&stats[ST_PV], 1u); }
}

// ---- Vector: fold the block's Ob into the accumulator; the last block normalizes into O ----
fn vectorUPD(row: Row, j: u32, tid: u32) {
  let last = j + 1u >= row.count;
  let obOff = obOffset(row, j);
  let aOff = alphaOffset(row, j);
  let accOff = params.accBase + row.r * BLOCK_Q * HEAD_DIM;
  for (var e = tid; e < BLOCK_Q * HEAD_DIM; e += THREADS) {
    let i = e / HEAD_DIM;
    let col = e % HEAD_DIM;
    if (i >= row.rows) { continue; }
    let oAt = row.oBase + (row.qStart + i) * params.oSeq + col;
    if (row.count == 0u) {
      // No key reaches this row block: attention over nothing is 0 (as the reference).
      o[oAt] = 0.0;
      continue;
    }
    var acc = ws[obOff + e];
    if (j > 0u) { acc = fma(ws[accOff + e], ws[aOff + i], acc); }
    if (last) {
      let l = ws[params.stateBase + (row.r * BLOCK_Q + i) * 2u + 1u];
      o[oAt] = select(0.0, acc / l, l > 0.0);
    } else {
      ws[accOff + e] = acc;
    }
  }
  if (tid == 0u) { atomicAdd(&stats[select(ST_UPD, ST_ZERO_ROWS, row.count == 0u)], 1u); }
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  var blocks = array<i32, 4>(params.qkBlock, params.smBlock, params.pvBlock, params.updBlock);
  // wg.y = index among the active phases, in phase order.
  var phase = 4u;
  var seen = 0u;
  for (var p = 0u; p < 4u; p++) {
    if (blocks[p] >= 0) {
      if (seen == wg.y && phase == 4u) { phase = p; }
      seen++;
    }
  }
  if (phase == 4u || wg.x >= params.nRows) { return; }
  let j = u32(blocks[phase]);
  let row = rowOf(wg.x);
  if (phase == PHASE_UPD && row.count == 0u && j == 0u) { vectorUPD(row, j, tid); return; }
  if (j >= row.count) { return; }
  if (phase == PHASE_QK) { cubeQK(row, j, tid); }
  else if (phase == PHASE_SM) { vectorSM(row, j, tid); }
  else if (phase == PHASE_PV) { cubePV(row, j, tid); }
  else { vectorUPD(row, j, tid); }
}
