// Standard attention, the paper's baseline: unfused and with S×S intermediates.
//   batchedGemm  S = Q·Kᵀ            (then, with other bindings, O = P·V)
//   scaleAddMask S = S·scale + mask   (a dense Sq×Sk mask buffer)
//   softmaxRows  P = softmax(S) row by row, in place
// Each is its own dispatch, so every intermediate makes a round trip through memory.
// The GEMM is a reasonable tiled one (64×64 tiles, 4×4 per invocation) so that the
// baseline is not a straw man. Element types of the GEMM operands are aliases
// (f16 storage on devices with shader-f16); scores and softmax are f32.

alias AElem = f32;
alias BElem = f32;
alias CElem = f32;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const PER_THREAD: u32 = 4u;
const GEMM_THREADS: u32 = 256u;
const ROW_THREADS: u32 = 256u;
const ELEMENT_THREADS: u32 = 256u;
// Finite stand-in for −∞ in the mask; rows whose max stays below MASKED_BELOW are all masked.
const MASKED_BELOW: f32 = -1.0e29;

struct Params {
  // GEMM C(z, m, n) = Σ_k A(z, m, k) · B(z, k, n); operand X(z, r, c) lives at
  // xBase + ((xZ0 + z) / xGroup) · xBatch + r · xRow + c · xCol.
  M: u32, N: u32, K: u32,
  aBase: u32, aZ0: u32, aGroup: u32, aBatch: u32, aRow: u32, aCol: u32,
  bBase: u32, bZ0: u32, bGroup: u32, bBatch: u32, bRow: u32, bCol: u32,
  cBase: u32, cZ0: u32, cGroup: u32, cBatch: u32, cRow: u32, cCol: u32,
  // Row-wise passes over `rows` rows of `cols` scores.
  rows: u32, cols: u32,
  scale: f32,
  maskBase: u32,
  maskRows: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> a: array<AElem>;
@group(0) @binding(2) var<storage, read> b: array<BElem>;
@group(0) @binding(3) var<storage, read_write> c: array<CElem>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read> mask: array<f32>;

var<workgroup> aTile: array<f32, TILE * TILE_K>;
var<workgroup> bTile: array<f32, TILE_K * TILE>;
var<workgroup> rowReduce: array<f32, ROW_THREADS>;

@compute @workgroup_size(GEMM_THREADS)
fn batchedGemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let z = wg.z;
  let m0 = wg.y * TILE;
  let n0 = wg.x * TILE;
  let tm = (tid / (TILE / PER_THREAD)) * PER_THREAD;
  let tn = (tid % (TILE / PER_THREAD)) * PER_THREAD;
  let aOff = params.aBase + ((params.aZ0 + z) / params.aGroup) * params.aBatch;
  let bOff = params.bBase + ((params.bZ0 + z) / params.bGroup) * params.bBatch;
  var acc: array<f32, PER_THREAD * PER_THREAD>;
  for (var k0 = 0u; k0 < params.K; k0 += TILE_K) {
    for (var e = tid; e < TILE * TILE_K; e += GEMM_THREADS) {
      let r = e / TILE_K;
      let kk = e % TILE_K;
      var x = 0.0;
      if (m0 + r < params.M && k0 + kk < params.K) { x = f32(a[aOff + (m0 + r) * params.aRow + (k0 + kk) * params.aCol]); }
      aTile[r * TILE_K + kk] = x;
      let kr = e / TILE;
      let col = e % TILE;
      var y = 0.0;
      if (k0 + kr < params.K && n0 + col < params.N) { y = f32(b[bOff + (k0 + kr) * params.bRow + (n0 + col) * params.bCol]); }
      bTile[kr * TILE + col] = y;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      var av: array<f32, PER_THREAD>;
      for (var i = 0u; i < PER_THREAD; i++) { av[i] = aTile[(tm + i) * TILE_K + kk]; }
      for (var j = 0u; j < PER_THREAD; j++) {
        let bv = bTile[kk * TILE + tn + j];
        for (var i = 0u; i < PER_THREAD; i++) { acc[i * PER_THREAD + j] = fma(av[i], bv, acc[i * PER_THREAD + j]); }
      }
    }
    workgroupBarrier();
  }
  let cOff = params.cBase + ((params.cZ0 + z) / params.cGroup) * params.cBatch;
  for (var i = 0u; i < PER_THREAD; i++) {
    for (var j = 0u; j < PER_THREAD; j++) {
      let m = m0 + tm + i;
      let n = n0 + tn + j;
      if (m < params.M && n < params.N) { c[cOff + m * params.cRow + n * params.cCol] = CElem(acc[i * PER_THREAD + j]); }
    }
  }
}

// One invocation per score; 2-D grid because there can be more than 65535 × 256 of them.
@compute @workgroup_size(ELEMENT_THREADS)
fn scaleAddMask(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * ELEMENT_THREADS;
  let perHead = params.maskRows * params.cols;
  if (idx >= params.rows * params.cols) { return; }
  scores[idx] = scores[idx] * params.scale + mask[params.maskBase + idx % perHead];
}

// One workgroup per row: max, then sum of exp, then normalize. All-masked rows become 0.
@compute @workgroup_size(ROW_THREADS)
fn softmaxRows(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let row = wg.x + wg.y * nwg.x;
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var mx = MASKED_BELOW;
  for (var j = tid; j < params.cols; j += ROW_THREADS) { mx = max(mx, scores[base + j]); }
  rowReduce[tid] = mx;
  workgroupBarrier();
  for (var s = ROW_THREADS / 2u; s > 0u; s /= 2u) {
    if (tid < s) { rowReduce[tid] = max(rowReduce[tid], rowReduce[tid + s]); }
    workgroupBarrier();
  }
  let rowMax = rowReduce[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var j = tid; j < params.cols; j += ROW_THREADS) {
    let x = scores[base + j];
    let p = select(exp(x - rowMax), 0.0, x < MASKED_BELOW);
    scores[base + j] = p;
    sum += p;
  }
  rowReduce[tid] = sum;
  workgroupBarrier();
  for (var s = ROW_THREADS / 2u; s > 0u; s /= 2u) {
    if (tid < s) { rowReduce[tid] += rowReduce[tid + s]; }
    workgroupBarrier();
  }
  let total = rowReduce[0];
  let inv = select(0.0, 1.0 / total, total > 0.0);
  for (var j = tid; j < params.cols; j += ROW_THREADS) { scores[base + j] *= inv; }
}
