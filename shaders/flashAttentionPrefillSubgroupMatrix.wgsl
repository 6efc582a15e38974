// FastAttention prefill on tensor cores through subgroup matrices (the
// subgroup-matrix tier). f16 Q/K/V/O in storage; S, softmax statistics and O
// accumulate in f32.

// Grid: (query blocks, query heads, batch). A workgroup is one subgroup of
// SG_SIZE invocations (the matrix builtins need workgroup-uniform offsets, so
// the workgroup and the subgroup coincide) and owns 16 query rows. Level 1:
// one K/V span of BLOCK_KV keys per outer step, staged into workgroup memory
// with vec4 loads (keys past kvLen as zeros: a matrix load that runs past the
// end of a buffer is clamped as a whole by robust buffer access, so matrices
// are only ever loaded from workgroup memory). Level 2: 16×16×16 matrix steps —
// S = Q·Kᵀ as BLOCK_KV/16 result tiles, O += P·V as HEAD_DIM/16 result tiles.
//
// Matrices give no element access and are not kept in arrays (drivers handle
// dynamically indexed arrays of them poorly), so the 16 rows' Q (f16) and O
// (f32) live in workgroup memory: S is stored to an f32 scratch, two
// invocations per row take max, exp2 and sums, rescale their half of the O row
// by exp2(m_old − m_new) in place, and write P as f16; each O tile is then
// loaded, accumulated over the span's P·V steps and stored back.
//
// Tiling-mask as in flashAttentionPrefill.wgsl: empty key blocks are outside the
// loop range, full blocks apply no mask, partial blocks read M-mask windows.

const HEAD_DIM: u32 = 128u;
const BLOCK_KV: u32 = 64u;
const SG_SIZE: u32 = 32u;
const MASK_BLOCK: u32 = 64u;

const BLOCK_Q: u32 = 16u;
const THREADS: u32 = SG_SIZE;
const D4: u32 = HEAD_DIM / 4u;
const D16: u32 = HEAD_DIM / 16u;
const KV16: u32 = BLOCK_KV / 16u;
const HALF_KV: u32 = BLOCK_KV / 2u;
const HALF_D: u32 = HEAD_DIM / 2u;
const NEG_BIG: f32 = -1.0e30;
const MASKED_BELOW: f32 = -1.0e29;

//#include prefillParams
//#include tilingMask

@group(0) @binding(0) var<storage, read> params: Params;
// Strides in params are in vec4 units.
@group(0) @binding(1) var<storage, read> q: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f16>>;
@group(0) @binding(5) var<storage, read> mMask: array<u32>;

var<workgroup> qTile: array<f16, 16u * HEAD_DIM>;
var<workgroup> kTile: array<f16, BLOCK_KV * HEAD_DIM>;
var<workgroup> vTile: array<f16, BLOCK_KV * HEAD_DIM>;
var<workgroup> oTile: array<f32, 16u * HEAD_DIM>;
var<workgroup> sTile: array<f32, 16u * BLOCK_KV>;
var<workgroup> pTile: array<f16, 16u * BLOCK_KV>;

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
  // Two invocations per row: row `myRow` of the 16, columns of half `half`.
  let myRow = tid / 2u;
  let half = tid % 2u;
  let rowValid = myRow < rows;
  let qBase = b * params.qBatch + hq * params.qHead;
  let kBase = b * params.kBatch + hkv * params.kHead;
  let vBase = b * params.vBatch + hkv * params.vHead;

  // Stage Q (rows past seqQ as zeros) and clear O.
  for (var e = tid; e < 16u * D4; e += THREADS) {
    let r = e / D4;
    var x = vec4<f16>(0.0);
    if (r < rows) { x = q[qBase + (qStart + r) * params.qSeq + e % D4]; }
    for (var c = 0u; c < 4u; c++) {
      qTile[e * 4u + c] = x[c];
      oTile[e * 4u + c] = 0.0;
    }
  }

  let range = keyBlockRange(qStart, rows, kvLen, offset);
  let firstBlock = range.x;
  let endBlock = range.y;

  var m = NEG_BIG;
  var l = 0.0;

  for (var kb = firstBlock; kb < endBlock; kb++) {
    let kStart = kb * BLOCK_KV;
    workgroupBarrier(); // the previous span's K and V are consumed
    for (var e = tid; e < BLOCK_KV * D4; e += THREADS) {
      let key = kStart + e / D4;
      var kx = vec4<f16>(0.0);
      var vx = vec4<f16>(0.0);
      if (key < kvLen) {
        kx = k[kBase + key * params.kSeq + e % D4];
        vx = v[vBase + key * params.vSeq + e % D4];
      }
      for (var c = 0u; c < 4u; c++) {
        kTile[e * 4u + c] = kx[c];
        vTile[e * 4u + c] = vx[c];
      }
    }
    workgroupBarrier();
    // S = Q·Kᵀ, one 16×16 tile of keys at a time.
    for (var n = 0u; n < KV16; n++) {
      var st = subgroup_matrix_result<f32, 16, 16>();
      for (var t = 0u; t < D16; t++) {
        let qt = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&qTile, t * 16u, false, HEAD_DIM);
        let kt = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kTile, n * 16u * HEAD_DIM + t * 16u, true, HEAD_DIM);
        st = subgroupMatrixMultiplyAccumulate(qt, kt, st);
      }
      subgroupMatrixStore(&sTile, n * 16u, st, false, BLOCK_KV);
    }
    workgroupBarrier();

    let edges = blockEdges(qStart, rows, kStart, kvLen, offset);
    var s: array<f32, HALF_KV>;
    var mx = NEG_BIG;
    for (var j = 0u; j < HALF_KV; j++) {
      let c = half * HALF_KV + j;
      var x = sTile[myRow * BLOCK_KV + c] * params.scaleLog2;
      let masked = !rowValid || (edges.partial && maskedAt(edges, myRow, c));
      x = select(x, NEG_BIG, masked);
      s[j] = x;
      mx = max(mx, x);
    }
    let mNew = max(m, max(mx, subgroupShuffleXor(mx, 1u)));
    let alpha = exp2(m - mNew);
    m = mNew;
    var sum = 0.0;
    for (var j = 0u; j < HALF_KV; j++) {
      let p = select(exp2(s[j] - mNew), 0.0, s[j] < MASKED_BELOW);
      sum += p;
      pTile[myRow * BLOCK_KV + half * HALF_KV + j] = f16(p);
    }
    l = l * alpha + sum;
    for (var j = 0u; j < HALF_D; j++) { oTile[myRow * HEAD_DIM + half * HALF_D + j] *= alpha; }
    workgroupBarrier();

    // O += P·V, one 16×16 output tile at a time.
    for (var t = 0u; t < D16; t++) {
      var ot = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>>(&oTile, t * 16u, false, HEAD_DIM);
      for (var n = 0u; n < KV16; n++) {
        let pt = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&pTile, n * 16u, false, BLOCK_KV);
        let vt = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&vTile, n * 16u * HEAD_DIM + t * 16u, false, HEAD_DIM);
        ot = subgroupMatrixMultiplyAccumulate(pt, vt, ot);
      }
      subgroupMatrixStore(&oTile, t * 16u, ot, false, HEAD_DIM);
    }
  }

  // Epilogue: O / l; rows that saw no key give 0.
  workgroupBarrier();
  let total = l + subgroupShuffleXor(l, 1u);
  let inv = select(0.0, 1.0 / total, total > 0.0);
  if (rowValid) {
    let oRow = b * params.oBatch + hq * params.oHead + (qStart + myRow) * params.oSeq;
    for (var j = 0u; j < HALF_D / 4u; j++) {
      let c = half * HALF_D + 4u * j;
      let at = myRow * HEAD_DIM + c;
      o[oRow + c / 4u] = vec4<f16>(vec4f(oTile[at], oTile[at + 1u], oTile[at + 2u], oTile[at + 3u]) * inv);
    }
  }
}
