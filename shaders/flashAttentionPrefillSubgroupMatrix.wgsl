// FastAttention prefill on tensor cores through subgroup matrices (the
// subgroup-matrix tier). f16 Q/K/V/O in storage; S, softmax statistics and O
// accumulate in f32.
//
// Grid: (query blocks, query heads, batch). A workgroup is SUBGROUPS subgroups of
// SG_SIZE invocations; subgroup `sg` (from @builtin(subgroup_id), so matrix
// offsets derived from it are subgroup-uniform) owns query rows
// [16·sg, 16·sg + 16) of the workgroup's BLOCK_Q = 16·SUBGROUPS rows.
//
// Level 1: one K/V span of BLOCK_KV keys per outer step, staged once into
// workgroup memory with 16-byte loads and shared by every subgroup (keys past
// kvLen as zeros: matrices are only loaded from workgroup memory, because a
// matrix load that runs past the end of a storage buffer is clamped as a whole
// by robust buffer access). Level 2: 16×16×16 matrix steps — a subgroup's
// S = Q·Kᵀ is BLOCK_KV/16 result tiles, its O += P·V is HEAD_DIM/16 tiles.
//
// Registers: each subgroup keeps its Q (left matrices) and its O accumulator
// (result matrices) in registers for the whole key loop. Matrices give no
// element access, so S goes through a per-subgroup f32 scratch where two
// invocations per row take the max and exp2 and write P as f16.
//
// Lazy rescaling: a row moves the max its O and l are relative to only when a
// span's max exceeds it by more than RESCALE_LOG2 (base 2); otherwise P is taken
// against the stale max (P ≤ 2^RESCALE_LOG2, well inside f16's range, and the
// final O / l is unchanged). Moving rescales O through the scratch (store,
// scale rows, reload); whether any row of the workgroup moved is read with
// workgroupUniformLoad, the same barrier that publishes P, because the rescale
// contains barriers. After the first span it is rare.
//
// K/V are software-pipelined: the next span's words are loaded into registers
// while the current span computes.
//
// No value can overflow f16 here: Q is not pre-scaled (the scale multiplies the
// f32 S), P ≤ 2^RESCALE_LOG2 and |O| ≤ max |V|.
//
// Tiling-mask as in flashAttentionPrefill.wgsl: empty key blocks are outside the
// loop range, full blocks apply no mask, partial blocks read M-mask windows.

const HEAD_DIM: u32 = 128u;
const BLOCK_KV: u32 = 32u;
const SUBGROUPS: u32 = 4u;
const SG_SIZE: u32 = 32u;
const MASK_BLOCK: u32 = 64u;
const RESCALE_LOG2: f32 = 8.0;

const BLOCK_Q: u32 = 16u * SUBGROUPS;
const THREADS: u32 = SG_SIZE * SUBGROUPS;
const D8: u32 = HEAD_DIM / 8u;
const D16: u32 = HEAD_DIM / 16u;
const KV16: u32 = BLOCK_KV / 16u;
// Row pitches (elements): 8 spare halves (16 bytes) per K/V row and 4 spare
// floats per S row move consecutive rows to different banks for matrix loads.
const KV_PITCH: u32 = HEAD_DIM + 8u;
const S_PITCH: u32 = BLOCK_KV + 4u;
const P_PITCH: u32 = BLOCK_KV + 8u;
// Two invocations per row, each owning half of the row's columns.
const HALF_KV: u32 = BLOCK_KV / 2u;
// 16-byte words of one K (or V) span, and per invocation.
const SPAN_WORDS: u32 = BLOCK_KV * D8;
const WORDS_PER_THREAD: u32 = (SPAN_WORDS + THREADS - 1u) / THREADS;
// Query rows staged through the K tile per round when Q is loaded.
const Q_ROUND: u32 = min(BLOCK_Q, BLOCK_KV);
const NEG_BIG: f32 = -1.0e30;
const MASKED_BELOW: f32 = -1.0e29;

//#include prefillParams
//#include tilingMask

@group(0) @binding(0) var<storage, read> params: Params;
// Strides in params are in vec4 (4-element) units; these tensors are read as
// 8-element words (vec4u), so indices are halved (every stride is a multiple of
// HEAD_DIM / 4, an even number for the head dims this tier takes).
@group(0) @binding(1) var<storage, read> q: array<vec4u>;
@group(0) @binding(2) var<storage, read> k: array<vec4u>;
@group(0) @binding(3) var<storage, read> v: array<vec4u>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f16>>;
@group(0) @binding(5) var<storage, read> mMask: array<u32>;

var<workgroup> kTile: array<f16, BLOCK_KV * KV_PITCH>;
var<workgroup> vTile: array<f16, BLOCK_KV * KV_PITCH>;
var<workgroup> sTile: array<f32, BLOCK_Q * S_PITCH>;
var<workgroup> pTile: array<f16, BLOCK_Q * P_PITCH>;
// Per span parity: set when some row of the workgroup needs a rescale. Four
// words, not two: every workgroup variable is a multiple of 16 bytes, because a
// matrix load from a variable placed after an 8-byte one read 8 bytes early on
// the H100 (Dawn over Vulkan): the loads assume 16-byte-aligned bases.
var<workgroup> rescaleFlag: array<u32, 4>;

// Word `word` (8 halves) of row `row` into the K tile (or the V tile).
fn storeWord(toV: bool, row: u32, word: u32, x: vec4u) {
  let at = row * KV_PITCH + word * 8u;
  for (var c = 0u; c < 4u; c++) {
    let h = bitcast<vec2<f16>>(x[c]);
    if (toV) {
      vTile[at + 2u * c] = h.x;
      vTile[at + 2u * c + 1u] = h.y;
    } else {
      kTile[at + 2u * c] = h.x;
      kTile[at + 2u * c + 1u] = h.y;
    }
  }
}

// This invocation's words of the K and V span starting at key kStart (keys past kvLen as zeros).
fn loadSpan(
  kStart: u32, kvLen: u32, kBase: u32, kSeq: u32, vBase: u32, vSeq: u32, tid: u32,
  kw: ptr<function, array<vec4u, WORDS_PER_THREAD>>, vw: ptr<function, array<vec4u, WORDS_PER_THREAD>>,
) {
  for (var i = 0u; i < WORDS_PER_THREAD; i++) {
    let e = tid + i * THREADS;
    let key = kStart + e / D8;
    var kx = vec4u(0u);
    var vx = vec4u(0u);
    if (e < SPAN_WORDS && key < kvLen) {
      kx = k[kBase + key * kSeq + e % D8];
      vx = v[vBase + key * vSeq + e % D8];
    }
    (*kw)[i] = kx;
    (*vw)[i] = vx;
  }
}

@compute @workgroup_size(THREADS)
fn main(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(local_invocation_index) tid: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let b = wg.z;
  let hq = wg.y;
  let hkv = hq / params.groupSize;
  let seqQ = params.seqQ;
  let kvLen = min(params.kvLen[b], params.seqK);
  let qStart = wg.x * BLOCK_Q;
  let rows = min(BLOCK_Q, seqQ - qStart);
  let offset = i32(kvLen) - i32(seqQ);
  // This invocation's row (of the workgroup's BLOCK_Q) and half of it.
  let myRow = sg * 16u + lane / 2u;
  let half = lane % 2u;
  let rowValid = myRow < rows;
  let qBase = (b * params.qBatch + hq * params.qHead) / 2u;
  let kBase = (b * params.kBatch + hkv * params.kHead) / 2u;
  let vBase = (b * params.vBatch + hkv * params.vHead) / 2u;
  let qSeq = params.qSeq / 2u;
  let kSeq = params.kSeq / 2u;
  let vSeq = params.vSeq / 2u;
  let sRow = sg * 16u * S_PITCH;
  let pRow = sg * 16u * P_PITCH;

  // Q into registers, staged through the K tile Q_ROUND rows at a time (rows past seqQ as zeros).
  var qm: array<subgroup_matrix_left<f16, 16, 16>, D16>;
  for (var r0 = 0u; r0 < BLOCK_Q; r0 += Q_ROUND) {
    workgroupBarrier();
    for (var e = tid; e < Q_ROUND * D8; e += THREADS) {
      let r = r0 + e / D8;
      var x = vec4u(0u);
      if (r < rows) { x = q[qBase + (qStart + r) * qSeq + e % D8]; }
      storeWord(false, e / D8, e % D8, x);
    }
    workgroupBarrier();
    if (sg * 16u >= r0 && sg * 16u < r0 + Q_ROUND) {
      let at = (sg * 16u - r0) * KV_PITCH;
      for (var t = 0u; t < D16; t++) {
        qm[t] = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&kTile, at + t * 16u, false, KV_PITCH);
      }
    }
  }
  var om: array<subgroup_matrix_result<f32, 16, 16>, D16>;
  for (var t = 0u; t < D16; t++) { om[t] = subgroup_matrix_result<f32, 16, 16>(); }

  let range = keyBlockRange(qStart, rows, kvLen, offset);
  var m = NEG_BIG;
  var l = 0.0;
  if (tid == 0u) { rescaleFlag[0] = 0u; rescaleFlag[1] = 0u; }

  // Software pipelining: a span's K/V words are loaded into registers one span
  // ahead, so the global loads are in flight while the previous span computes.
  var kw: array<vec4u, WORDS_PER_THREAD>;
  var vw: array<vec4u, WORDS_PER_THREAD>;
  loadSpan(range.x * BLOCK_KV, kvLen, kBase, kSeq, vBase, vSeq, tid, &kw, &vw);

  for (var kb = range.x; kb < range.y; kb++) {
    let kStart = kb * BLOCK_KV;
    workgroupBarrier(); // the previous span's K, V, P and flag are consumed
    for (var i = 0u; i < WORDS_PER_THREAD; i++) {
      let e = tid + i * THREADS;
      if (e < SPAN_WORDS) {
        storeWord(false, e / D8, e % D8, kw[i]);
        storeWord(true, e / D8, e % D8, vw[i]);
      }
    }
    // The other parity's flag was read one span ago, before the barrier above.
    if (tid == 0u) { rescaleFlag[(kb + 1u) % 2u] = 0u; }
    workgroupBarrier();
    if (kb + 1u < range.y) { loadSpan(kStart + BLOCK_KV, kvLen, kBase, kSeq, vBase, vSeq, tid, &kw, &vw); }

    // S = Q·Kᵀ for this subgroup's 16 rows, one 16×16 tile of keys at a time.
    for (var n = 0u; n < KV16; n++) {
      var st = subgroup_matrix_result<f32, 16, 16>();
      for (var t = 0u; t < D16; t++) {
        let kt = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&kTile, n * 16u * KV_PITCH + t * 16u, true, KV_PITCH);
        st = subgroupMatrixMultiplyAccumulate(qm[t], kt, st);
      }
      subgroupMatrixStore(&sTile, sRow + n * 16u, st, false, S_PITCH);
    }
    workgroupBarrier();

    // Softmax for this invocation's half row. A row moves its max (and must
    // rescale its O and l) only when the span's max exceeds it by RESCALE_LOG2.
    let edges = blockEdges(qStart, rows, kStart, kvLen, offset);
    var s: array<f32, HALF_KV>;
    var mx = NEG_BIG;
    for (var j = 0u; j < HALF_KV; j++) {
      let c = half * HALF_KV + j;
      var x = sTile[myRow * S_PITCH + c] * params.scaleLog2;
      let masked = !rowValid || (edges.partial && maskedAt(edges, myRow, c));
      x = select(x, NEG_BIG, masked);
      s[j] = x;
      mx = max(mx, x);
    }
    mx = max(mx, subgroupShuffleXor(mx, 1u));
    let moves = mx > m + RESCALE_LOG2;
    let mNew = select(m, mx, moves);
    let alpha = exp2(m - mNew);
    m = mNew;
    var sum = 0.0;
    for (var j = 0u; j < HALF_KV; j++) {
      let p = select(exp2(s[j] - m), 0.0, s[j] < MASKED_BELOW);
      sum += p;
      pTile[myRow * P_PITCH + half * HALF_KV + j] = f16(p);
    }
    l = l * alpha + sum;
    if (subgroupAny(moves) && lane == 0u) { rescaleFlag[kb % 2u] = 1u; }
    // One barrier for both: P is written, and whether any row moved is known to all.
    if (workgroupUniformLoad(&rescaleFlag[kb % 2u]) != 0u) {
      // O tiles go through this subgroup's S scratch (S is in registers by now), KV16 tiles at a time.
      for (var t0 = 0u; t0 < D16; t0 += KV16) {
        for (var n = 0u; n < KV16 && t0 + n < D16; n++) {
          subgroupMatrixStore(&sTile, sRow + n * 16u, om[t0 + n], false, S_PITCH);
        }
        workgroupBarrier();
        for (var j = 0u; j < HALF_KV; j++) { sTile[myRow * S_PITCH + half * HALF_KV + j] *= alpha; }
        workgroupBarrier();
        for (var n = 0u; n < KV16 && t0 + n < D16; n++) {
          om[t0 + n] = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>>(&sTile, sRow + n * 16u, false, S_PITCH);
        }
        workgroupBarrier();
      }
    }

    // O += P·V.
    var pm: array<subgroup_matrix_left<f16, 16, 16>, KV16>;
    for (var n = 0u; n < KV16; n++) {
      pm[n] = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&pTile, pRow + n * 16u, false, P_PITCH);
    }
    for (var t = 0u; t < D16; t++) {
      for (var n = 0u; n < KV16; n++) {
        let vt = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&vTile, n * 16u * KV_PITCH + t * 16u, false, KV_PITCH);
        om[t] = subgroupMatrixMultiplyAccumulate(pm[n], vt, om[t]);
      }
    }
  }

  // Epilogue: O / l through the S scratch; rows that saw no key give 0.
  let total = l + subgroupShuffleXor(l, 1u);
  let inv = select(0.0, 1.0 / total, total > 0.0);
  let oRow = b * params.oBatch + hq * params.oHead + (qStart + myRow) * params.oSeq;
  for (var t0 = 0u; t0 < D16; t0 += KV16) {
    workgroupBarrier();
    for (var n = 0u; n < KV16 && t0 + n < D16; n++) {
      subgroupMatrixStore(&sTile, sRow + n * 16u, om[t0 + n], false, S_PITCH);
    }
    workgroupBarrier();
    if (rowValid) {
      // This invocation's half of the row: HALF_KV columns of the stored tiles.
      for (var j = 0u; j < HALF_KV; j += 4u) {
        let c = half * HALF_KV + j;
        if (t0 * 16u + c < HEAD_DIM) {
          let at = myRow * S_PITCH + c;
          o[oRow + (t0 * 16u + c) / 4u] = vec4<f16>(vec4f(sTile[at], sTile[at + 1u], sTile[at + 2u], sTile[at + 3u]) * inv);
        }
      }
    }
  }
}
