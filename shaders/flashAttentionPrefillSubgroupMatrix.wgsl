// FastAttention prefill on tensor cores through subgroup matrices (the
// subgroup-matrix tier). f16 Q/K/V/O in storage; S, softmax statistics and O
// accumulate in f32.
//
// Grid: query blocks (last to first), query heads and batch, in the order
// headAndQStart (common/prefillParams.wgsl) explains. A workgroup is SUBGROUPS subgroups of
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
// contains barriers. A row leaving its initial max has O = 0 and needs none,
// so the rescale is rare.
//
// K/V are software-pipelined: the next span's words are loaded into registers
// while the current span computes.
//
// Every loop over matrices is unrolled (for-directives expanded by
// src/runtime/wgslUnroll.ts with the counts D16, KV16, HALF_KV,
// WORDS_PER_THREAD, Q_ROUNDS and Q_WORDS): matrices indexed by a loop counter
// were kept in memory by the driver, at half the speed.
//
// No value can overflow f16 here: Q is not pre-scaled (the scale multiplies the
// f32 S), P ≤ 2^RESCALE_LOG2 and |O| ≤ max |V|.
//
// Tiling-mask as in flashAttentionPrefill.wgsl: empty key blocks are outside the
// loop range, full blocks apply no mask, partial blocks read M-mask windows.

const HEAD_DIM: u32 = 128u;
const BLOCK_KV: u32 = 32u;
const SUBGROUPS: u32 = 8u;
const SG_SIZE: u32 = 32u;
const MASK_BLOCK: u32 = 128u;
const RESCALE_LOG2: f32 = 8.0;
// Paged KV (PAGED = true): K/V are read through the page table of the paged KV
// cache, as in flashAttentionPrefill.wgsl (entry = (pool << 28) | page; a page is
// [K: PAGE_HEADS][PAGE_TOKENS][D] then [V: …]; pool 0 bound at k, pool 1 at v).
// Only the staging loads differ.
const PAGED: bool = false;
const PAGE_TOKENS: u32 = 256u;
const PAGE_HEADS: u32 = 1u;
const PAGE_TABLE_STRIDE: u32 = 1u;

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
// Two invocations per row, each owning half of the row's columns (and 8 of
// each 16-column O tile in the epilogue and rescale).
const HALF_KV: u32 = BLOCK_KV / 2u;
// 16-byte words of one K (or V) span, and per invocation.
const SPAN_WORDS: u32 = BLOCK_KV * D8;
const WORDS_PER_THREAD: u32 = (SPAN_WORDS + THREADS - 1u) / THREADS;
// Query rows staged through the K tile per round when Q is loaded.
const Q_ROUND: u32 = min(BLOCK_Q, BLOCK_KV);
// 16-byte words from a page's K half to its V half, and per page.
const PAGE_V_OFFSET: u32 = PAGE_HEADS * PAGE_TOKENS * D8;
const PAGE_WORDS: u32 = 2u * PAGE_V_OFFSET;
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
// A placeholder when not PAGED.
@group(0) @binding(6) var<storage, read> pageTable: array<u32>;

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
  let h0 = bitcast<vec2<f16>>(x.x);
  let h1 = bitcast<vec2<f16>>(x.y);
  let h2 = bitcast<vec2<f16>>(x.z);
  let h3 = bitcast<vec2<f16>>(x.w);
  if (toV) {
    vTile[at] = h0.x; vTile[at + 1u] = h0.y; vTile[at + 2u] = h1.x; vTile[at + 3u] = h1.y;
    vTile[at + 4u] = h2.x; vTile[at + 5u] = h2.y; vTile[at + 6u] = h3.x; vTile[at + 7u] = h3.y;
  } else {
    kTile[at] = h0.x; kTile[at + 1u] = h0.y; kTile[at + 2u] = h1.x; kTile[at + 3u] = h1.y;
    kTile[at + 4u] = h2.x; kTile[at + 5u] = h2.y; kTile[at + 6u] = h3.x; kTile[at + 7u] = h3.y;
  }
}

// Word `e` of the Q rows [r0, r0 + Q_ROUND) of the block at qStart (zeros past the round or the block's rows).
fn qWord(r0: u32, e: u32, rows: u32, qBase: u32, qStart: u32, qSeq: u32) -> vec4u {
  let r = r0 + e / D8;
  if (e < Q_ROUND * D8 && r < rows) { return q[qBase + (qStart + r) * qSeq + e % D8]; }
  return vec4u(0u);
}

// Word `e` of the K (x) and V (y) span starting at key kStart (zeros past the span or kvLen).
// Paged, kBase is the sequence's page-table row and vBase the KV head's offset in a page.
fn spanWord(e: u32, kStart: u32, kvLen: u32, kBase: u32, kSeq: u32, vBase: u32, vSeq: u32) -> array<vec4u, 2> {
  let key = kStart + e / D8;
  if (e < SPAN_WORDS && key < kvLen) {
    if (PAGED) {
      let entry = pageTable[kBase + key / PAGE_TOKENS];
      let at = (entry & 0x0fffffffu) * PAGE_WORDS + vBase + (key % PAGE_TOKENS) * D8 + e % D8;
      if ((entry >> 28u) == 0u) { return array<vec4u, 2>(k[at], k[at + PAGE_V_OFFSET]); }
      return array<vec4u, 2>(v[at], v[at + PAGE_V_OFFSET]);
    }
    return array<vec4u, 2>(k[kBase + key * kSeq + e % D8], v[vBase + key * vSeq + e % D8]);
  }
  return array<vec4u, 2>(vec4u(0u), vec4u(0u));
}

@compute @workgroup_size(THREADS)
fn main(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(num_workgroups) groups: vec3u,
  @builtin(local_invocation_index) tid: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let b = wg.z;
  let at = headAndQStart(wg, groups);
  let hq = at.x;
  let hkv = hq / params.groupSize;
  let seqQ = params.seqQ;
  let kvLen = min(params.kvLen[b], params.seqK);
  let qStart = at.y;
  let rows = min(BLOCK_Q, seqQ - qStart);
  let offset = i32(kvLen) - i32(seqQ);
  // This invocation's row (of the workgroup's BLOCK_Q) and half of it.
  let myRow = sg * 16u + lane / 2u;
  let half = lane % 2u;
  let rowValid = myRow < rows;
  let qBase = (b * params.qBatch + hq * params.qHead) / 2u;
  let kBase = select((b * params.kBatch + hkv * params.kHead) / 2u, b * PAGE_TABLE_STRIDE, PAGED);
  let vBase = select((b * params.vBatch + hkv * params.vHead) / 2u, hkv * PAGE_TOKENS * D8, PAGED);
  let qSeq = params.qSeq / 2u;
  let kSeq = params.kSeq / 2u;
  let vSeq = params.vSeq / 2u;
  let scaleLog2 = params.scaleLog2;
  let sRow = sg * 16u * S_PITCH;
  let pRow = sg * 16u * P_PITCH;
  // This invocation's half row in the S scratch and in P; its 8 columns of a 16-column O tile.
  let sAt = myRow * S_PITCH + half * HALF_KV;
  let pAt = myRow * P_PITCH + half * HALF_KV;
  // Element j of its half row is column (j + its row in the subgroup) % HALF_KV of
  // it. Walked from column 0, every row's S loads and P stores hit the same 8 banks
  // (rows sit 4 banks apart): 4-way conflicts. Rotated by the row, the loads are
  // conflict-free and the stores 2-way.
  let rot = lane / 2u;
  let oAt = myRow * S_PITCH + half * 8u;

  let mp = maskParams();
  let range = keyBlockRange(mp, qStart, rows, kvLen, offset);
  // Software pipelining: a span's K/V words are loaded into registers one span
  // ahead, so the global loads are in flight while the previous span computes.
  //#for i in WORDS_PER_THREAD
  var w{i} = spanWord(tid + {i}u * THREADS, range.x * BLOCK_KV, kvLen, kBase, kSeq, vBase, vSeq);
  //#endfor

  // Q into registers, staged through the K tile Q_ROUND rows at a time. Every
  // round's words are loaded before the first is staged, like the first span's
  // K/V above: one global round trip instead of one per round.
  //#for r in Q_ROUNDS
  //#for i in Q_WORDS
  let qw{r}_{i} = qWord({r}u * Q_ROUND, tid + {i}u * THREADS, rows, qBase, qStart, qSeq);
  //#endfor
  //#endfor
  //#for t in D16
  var qm{t}: subgroup_matrix_left<f16, 16, 16>;
  //#endfor
  //#for r in Q_ROUNDS
  workgroupBarrier();
  //#for i in Q_WORDS
  {
    let e = tid + {i}u * THREADS;
    if (e < Q_ROUND * D8) { storeWord(false, e / D8, e % D8, qw{r}_{i}); }
  }
  //#endfor
  workgroupBarrier();
  if (sg * 16u >= {r}u * Q_ROUND && sg * 16u < ({r}u + 1u) * Q_ROUND) {
    //#for t in D16
    qm{t} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&kTile, (sg * 16u - {r}u * Q_ROUND) * KV_PITCH + {t}u * 16u, KV_PITCH);
    //#endfor
  }
  //#endfor
  //#for t in D16
  var om{t} = subgroup_matrix_result<f32, 16, 16>();
  //#endfor

  var m = NEG_BIG;
  var l = 0.0;
  if (tid == 0u) { rescaleFlag[0] = 0u; rescaleFlag[1] = 0u; }

  for (var kb = range.x; kb < range.y; kb++) {
    let kStart = kb * BLOCK_KV;
    workgroupBarrier(); // the previous span's K, V, P and flag are consumed
    //#for i in WORDS_PER_THREAD
    if (tid + {i}u * THREADS < SPAN_WORDS) {
      let e = tid + {i}u * THREADS;
      storeWord(false, e / D8, e % D8, w{i}[0]);
      storeWord(true, e / D8, e % D8, w{i}[1]);
    }
    //#endfor
    // The other parity's flag was read one span ago, before the barrier above.
    if (tid == 0u) { rescaleFlag[(kb + 1u) % 2u] = 0u; }
    workgroupBarrier();
    if (kb + 1u < range.y) {
      //#for i in WORDS_PER_THREAD
      w{i} = spanWord(tid + {i}u * THREADS, kStart + BLOCK_KV, kvLen, kBase, kSeq, vBase, vSeq);
      //#endfor
    }

    // S = Q·Kᵀ for this subgroup's 16 rows: the KV16 key tiles accumulate side by side.
    //#for n in KV16
    var st{n} = subgroup_matrix_result<f32, 16, 16>();
    //#endfor
    //#for t in D16
    //#for n in KV16
    st{n} = subgroupMatrixMultiplyAccumulate(qm{t}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&kTile, {n}u * 16u * KV_PITCH + {t}u * 16u, KV_PITCH), st{n});
    //#endfor
    //#endfor
    //#for n in KV16
    subgroupMatrixStore<row_major>(&sTile, sRow + {n}u * 16u, st{n}, S_PITCH);
    //#endfor
    workgroupBarrier();

    // Softmax for this invocation's half row. A row moves its max (and must
    // rescale its O and l) only when the span's max exceeds it by RESCALE_LOG2.
    let edges = blockEdges(mp, qStart, rows, kStart, kvLen, offset);
    // All loads first, then one masking branch: a branch per element kept the loads from overlapping.
    //#for j in HALF_KV
    var s{j} = sTile[sAt + ({j}u + rot) % HALF_KV] * scaleLog2;
    //#endfor
    if (!rowValid || edges.partial) {
      //#for j in HALF_KV
      s{j} = select(s{j}, NEG_BIG, !rowValid || maskedAt(edges, myRow, half * HALF_KV + ({j}u + rot) % HALF_KV));
      //#endfor
    }
    var mx = NEG_BIG;
    //#for j in HALF_KV
    mx = max(mx, s{j});
    //#endfor
    mx = max(mx, subgroupShuffleXor(mx, 1u));
    let moves = mx > m + RESCALE_LOG2;
    // A row that had seen no key yet (m still NEG_BIG) has O = 0: nothing to rescale.
    let rescale = moves && m > MASKED_BELOW;
    let mNew = select(m, mx, moves);
    let alpha = exp2(m - mNew);
    m = mNew;
    var sum = 0.0;
    //#for j in HALF_KV
    let p{j} = select(exp2(s{j} - m), 0.0, s{j} < MASKED_BELOW);
    sum += p{j};
    pTile[pAt + ({j}u + rot) % HALF_KV] = f16(p{j});
    //#endfor
    l = l * alpha + sum;
    if (subgroupAny(rescale) && lane == 0u) { rescaleFlag[kb % 2u] = 1u; }
    // One barrier for both: P is written, and whether any row moved is known to all.
    if (workgroupUniformLoad(&rescaleFlag[kb % 2u]) != 0u) {
      // O tiles go one at a time through this subgroup's S scratch (S is in registers by now).
      //#for t in D16
      subgroupMatrixStore<row_major>(&sTile, sRow, om{t}, S_PITCH);
      workgroupBarrier();
      for (var j = 0u; j < 8u; j++) { sTile[oAt + j] *= alpha; }
      workgroupBarrier();
      om{t} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>, row_major>(&sTile, sRow, S_PITCH);
      workgroupBarrier();
      //#endfor
    }

    // O += P·V.
    //#for n in KV16
    let pm{n} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&pTile, pRow + {n}u * 16u, P_PITCH);
    //#endfor
    //#for t in D16
    //#for n in KV16
    om{t} = subgroupMatrixMultiplyAccumulate(pm{n}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&vTile, {n}u * 16u * KV_PITCH + {t}u * 16u, KV_PITCH), om{t});
    //#endfor
    //#endfor
  }

  // Epilogue: O / l through the S scratch, one 16-column tile at a time; rows that saw no key give 0.
  let total = l + subgroupShuffleXor(l, 1u);
  let inv = select(0.0, 1.0 / total, total > 0.0);
  let oRow = (b * params.oBatch + hq * params.oHead + (qStart + myRow) * params.oSeq) + half * 2u;
  //#for t in D16
  workgroupBarrier();
  subgroupMatrixStore<row_major>(&sTile, sRow, om{t}, S_PITCH);
  workgroupBarrier();
  if (rowValid) {
    o[oRow + {t}u * 4u] = vec4<f16>(vec4f(sTile[oAt], sTile[oAt + 1u], sTile[oAt + 2u], sTile[oAt + 3u]) * inv);
    o[oRow + {t}u * 4u + 1u] = vec4<f16>(vec4f(sTile[oAt + 4u], sTile[oAt + 5u], sTile[oAt + 6u], sTile[oAt + 7u]) * inv);
  }
  //#endfor
}
