// FastAttention prefill: FlashAttention-2 with two-level tiling and the tiling-mask.
//
// Grid: query blocks (last to first), query heads and batch, in the order
// headAndQStart (common/prefillParams.wgsl) explains. Level 1: a workgroup owns BLOCK_Q
// query rows and walks the non-empty key blocks of its row block, one K/V span
// of BLOCK_KV keys per outer step. Level 2: the workgroup is ROW_GROUPS row groups
// of THREADS_PER_ROW invocations; an invocation owns ROWS_PER_THREAD rows,
// interleaved (rowGroup + i·ROW_GROUPS, so the row groups of one subgroup read
// different banks), a register tile of ROWS_PER_THREAD × COLS_PER_THREAD scores
// (keys lane + j·THREADS_PER_ROW) and ROWS_PER_THREAD × 4·DIMS4_PER_THREAD output
// accumulators. Every inner step is an outer product over that register tile with
// vec4 operands from workgroup memory: S = Q·Kᵀ takes one vec4 of head dims of
// each of its rows and keys; O += P·V takes, per key, its rows' probabilities as
// vec4s and its output columns of V. The span reaches workgroup memory in
// CHUNK-deep slices (CHUNK head dims of Q and K, then CHUNK keys of V) that share
// one buffer per stage. The next slice (even across the Q·Kᵀ → P·V → next block
// boundaries) is loaded into registers while this one is used, so global latency
// overlaps math; with KV_STAGES = 2 it is stored into the other buffer, so one
// barrier per slice suffices (one stage needs a second before each store).
//
// Per-row values shared by a row group (P, and partial row maxima and sums) are
// stored as vec4s over 4 of an invocation's rows ("row vectors", RV_PITCH4 vec4
// per key or lane), so every workgroup store writes a whole vector of its own
// (no component stores) and every load feeds 4 rows.
//
// Softmax is online and in base 2 (scale·log2 e is folded into Q): a running max
// and sum per row, the output divided by the sum once at the end. Rows that see no
// key output 0.
//
// Tiling-mask: the loop range skips empty key blocks; full blocks apply no mask;
// partial blocks read their B-mask from the M-mask at offsets computed per block.
// src/tiling/mask.ts is the specification of that arithmetic.
//
// Paged KV (PAGED = true): K and V come from the paged KV cache
// (src/kvcache/pagedKvCache.ts) instead of contiguous tensors. Page-table entry =
// (pool << 28) | page within the pool; a page is `[K: PAGE_HEADS][PAGE_TOKENS][D]
// [V: PAGE_HEADS][PAGE_TOKENS][D]`; pool 0 is bound at `k`, pool 1 at `v` (so a
// prefill reads caches of at most 2 pool buffers: the 8 storage bindings below
// are the WebGPU default maxStorageBuffersPerShaderStage, and WGSL counts a
// binding as used even inside a branch on a false const). Only kAt/vAt differ;
// with PAGED = false they are today's contiguous reads.
//
// f16 range check (CHECK_F16 = true): every staged value that is not finite or
// whose magnitude exceeds 65504 (after the scale·log2 e for Q) sets a bit in
// `status` with atomicOr (one compare per staged vec4; the atomic only on that
// rare path). On for every pipeline that rounds staged values to f16, and on the
// f32 tier when asked (`checkF16Range`); off, it compiles out.
//   binding 6  pageTable: array<u32>                 (read; a placeholder when not PAGED)
//   binding 7  status:    array<atomic<u32>>          (read_write, owned by the operator;
//              word 0: bit 0 (1) = q, bit 1 (2) = k, bit 2 (4) = v; the host reads and clears it)
// Other prefill kernels (the subgroup-matrix tier) use the same `status` binding
// number, name, type and bits; the host binds every binding a kernel declares by name.
//
// Loops over register arrays are #for blocks, unrolled by the pipeline cache (src/runtime/wgslUnroll.ts;
// counts: vectorKernelCounts in src/tiling/tileConfig.ts): the H100 driver kept loop-indexed arrays in memory.
// So are the steps within a slice (CHUNK4 head-dim steps of Q·Kᵀ, CHUNK keys of P·V): unrolled, the driver
// can issue the next step's workgroup-memory loads before this step's FMAs (H100, f32, S4096 D128:
// 21.7 → 24.4 TFLOP/s).
//
// The constants and type aliases are defaults; src/runtime/wgsl.ts specializes
// them per pipeline. Tiers: Store4 is the element type in storage (vec4<f32> or,
// with shader-f16, vec4<f16>), Tile4 the type staged in workgroup memory (f16
// halves its footprint on the f16 tier). Scores, softmax statistics and
// accumulators are f32 on every tier.

alias Store4 = vec4<f32>;
alias Tile4 = vec4<f32>;

const HEAD_DIM: u32 = 64u;
const BLOCK_Q: u32 = 32u;
const BLOCK_KV: u32 = 32u;
const ROWS_PER_THREAD: u32 = 2u;
const THREADS_PER_ROW: u32 = 16u;
const CHUNK: u32 = 8u;
const KV_STAGES: u32 = 2u;
const MASK_BLOCK: u32 = 32u;
// K/V through the page table (see above).
const PAGED: bool = false;
const PAGE_TOKENS: u32 = 256u;
const PAGE_HEADS: u32 = 1u;
// Page-table entries per sequence.
const PAGE_TABLE_STRIDE: u32 = 1u;
// Flag staged values outside the f16 range in `status`.
const CHECK_F16: bool = false;

const ROW_GROUPS: u32 = BLOCK_Q / ROWS_PER_THREAD;
const THREADS: u32 = ROW_GROUPS * THREADS_PER_ROW;
const COLS_PER_THREAD: u32 = BLOCK_KV / THREADS_PER_ROW;
const D4: u32 = HEAD_DIM / 4u;
const CHUNK4: u32 = CHUNK / 4u;
const DIMS4_PER_THREAD: u32 = (D4 + THREADS_PER_ROW - 1u) / THREADS_PER_ROW;
// Q and K slice rows are padded by one vec4: consecutive keys (the lanes of a row
// group) and consecutive rows (the row groups of a subgroup) hit distinct banks.
const PITCH4: u32 = CHUNK4 + 1u;
const Q_SLICE: u32 = BLOCK_Q * PITCH4;
const K_SLICE: u32 = BLOCK_KV * PITCH4;
const V_SLICE: u32 = CHUNK * D4;
// One stage holds a Q·Kᵀ slice (Q rows, then K rows) or a P·V slice (V rows): never both at once.
const STAGE4: u32 = max(Q_SLICE + K_SLICE, V_SLICE);
const D_SLICES: u32 = HEAD_DIM / CHUNK;
const KV_SLICES: u32 = BLOCK_KV / CHUNK;
// Row vectors: an invocation's rows 4 at a time; RV_PITCH4 vec4 per key (P) or per
// lane (row scratch), padded by one so the lanes of a row group hit distinct banks.
const ROW4: u32 = (ROWS_PER_THREAD + 3u) / 4u;
const RV_PITCH4: u32 = ROW_GROUPS * ROW4 + 1u;
// vec4 loads per invocation to stage one slice (rounded up; the tail is guarded).
const QK_LOADS: u32 = ((BLOCK_Q + BLOCK_KV) * CHUNK4 + THREADS - 1u) / THREADS;
const V_LOADS: u32 = (V_SLICE + THREADS - 1u) / THREADS;
// Finite stand-in for −∞: exp2(x − m) stays well defined for fully masked rows.
const NEG_BIG: f32 = -1.0e30;
const MASKED_BELOW: f32 = -1.0e29;
// One page in Store4 units, and where its V half starts.
const PAGE_V_OFFSET: u32 = PAGE_HEADS * PAGE_TOKENS * D4;
const PAGE_SIZE4: u32 = 2u * PAGE_V_OFFSET;
// Bits of 65504.0 (the largest f16) as f32: |x| > F16_MAX ⇔ (bits & 0x7fffffff) > F16_MAX_BITS,
// an integer compare that also catches ±inf and NaN whatever the compiler assumes about them.
const F16_MAX_BITS: u32 = 0x477fe000u;
const STATUS_Q: u32 = 1u;
const STATUS_K: u32 = 2u;
const STATUS_V: u32 = 4u;

//#include prefillParams
//#include tilingMask

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> q: array<Store4>;
@group(0) @binding(2) var<storage, read> k: array<Store4>;
@group(0) @binding(3) var<storage, read> v: array<Store4>;
@group(0) @binding(4) var<storage, read_write> o: array<Store4>;
@group(0) @binding(5) var<storage, read> mMask: array<u32>;
@group(0) @binding(6) var<storage, read> pageTable: array<u32>;
@group(0) @binding(7) var<storage, read_write> status: array<atomic<u32>>;

var<workgroup> slices: array<Tile4, KV_STAGES * STAGE4>;
// P of the current key block: key-major row vectors.
var<workgroup> pTile: array<vec4f, BLOCK_KV * RV_PITCH4>;
// Per-lane partial row maxima, then sums: lane-major row vectors.
var<workgroup> rowScratch: array<vec4f, THREADS_PER_ROW * RV_PITCH4>;

struct Block {
  qBase: u32,   // vec4 index of (b, hq, 0, 0) in q
  // Contiguous: vec4 index of (b, hkv, 0, 0) in k and in v. Paged: kBase is the
  // sequence's first page-table entry, vBase the KV head's offset inside a page.
  kBase: u32,
  vBase: u32,
  qStart: u32,
  rows: u32,
  kvLen: u32,
  // Row strides and the Q scale, read from params once: read there per staged vec4,
  // they cost the H100 f32 tier 3.5% (S4096 D128, same run: 24.6 → 25.5 TFLOP/s).
  qSeq: u32,
  kSeq: u32,
  vSeq: u32,
  scaleLog2: f32,
}

// kBase and vBase of a Block for sequence b, KV head hkv.
fn kvBases(b: u32, hkv: u32) -> vec2u {
  if (PAGED) { return vec2u(b * PAGE_TABLE_STRIDE, hkv * PAGE_TOKENS * D4); }
  return vec2u(b * params.kBatch + hkv * params.kHead, b * params.vBatch + hkv * params.vHead);
}

// vec4 c of key `key` in the paged cache: pool 0 is bound at k, pool 1 at v.
fn pagedAt(blk: Block, key: u32, isV: bool, c: u32) -> Store4 {
  let entry = pageTable[blk.kBase + key / PAGE_TOKENS];
  var at = (entry & 0x0fffffffu) * PAGE_SIZE4 + blk.vBase + (key % PAGE_TOKENS) * D4 + c;
  if (isV) { at += PAGE_V_OFFSET; }
  if ((entry >> 28u) == 0u) { return k[at]; }
  return v[at];
}

fn kAt(blk: Block, key: u32, c: u32) -> Store4 {
  if (PAGED) { return pagedAt(blk, key, false, c); }
  return k[blk.kBase + key * blk.kSeq + c];
}

fn vAt(blk: Block, key: u32, c: u32) -> Store4 {
  if (PAGED) { return pagedAt(blk, key, true, c); }
  return v[blk.vBase + key * blk.vSeq + c];
}

// Flag a staged vec4 (Q already scaled) in `status` if rounding it to f16 would overflow.
fn flagF16(x: vec4f, bit: u32) {
  if (CHECK_F16) {
    if (any((bitcast<vec4u>(x) & vec4u(0x7fffffffu)) > vec4u(F16_MAX_BITS))) { atomicOr(&status[0], bit); }
  }
}

// The i-th vec4 this invocation stages for Q·Kᵀ slice `s` (head dims [4·CHUNK4·s, …))
// of the key block starting at kStart: Q rows first, then K rows; zero outside the
// valid rows and keys.
fn loadQK(blk: Block, kStart: u32, tid: u32, i: u32, s: u32) -> Tile4 {
  let e = tid + i * THREADS;
  let c4 = s * CHUNK4;
  if (e < BLOCK_Q * CHUNK4) {
    let r = e / CHUNK4;
    if (r >= blk.rows) { return Tile4(0.0); }
    let x = vec4f(q[blk.qBase + (blk.qStart + r) * blk.qSeq + c4 + e % CHUNK4]) * blk.scaleLog2;
    flagF16(x, STATUS_Q);
    return Tile4(x);
  }
  let f = e - BLOCK_Q * CHUNK4;
  let key = kStart + f / CHUNK4;
  if (f >= BLOCK_KV * CHUNK4 || key >= blk.kvLen) { return Tile4(0.0); }
  let x = kAt(blk, key, c4 + f % CHUNK4);
  flagF16(vec4f(x), STATUS_K);
  return Tile4(x);
}

fn storeQK(x: Tile4, tid: u32, i: u32, base: u32) {
  let e = tid + i * THREADS;
  if (e < BLOCK_Q * CHUNK4) {
    slices[base + (e / CHUNK4) * PITCH4 + e % CHUNK4] = x;
    return;
  }
  let f = e - BLOCK_Q * CHUNK4;
  if (f < BLOCK_KV * CHUNK4) { slices[base + Q_SLICE + (f / CHUNK4) * PITCH4 + f % CHUNK4] = x; }
}

// The i-th vec4 of V slice `s` (keys [kStart + CHUNK·s, …)); zero past kvLen so
// uninitialised cache slots cannot leak NaN into P·V.
fn loadV(blk: Block, kStart: u32, tid: u32, i: u32, s: u32) -> Tile4 {
  let e = tid + i * THREADS;
  let key = kStart + s * CHUNK + e / D4;
  if (e >= V_SLICE || key >= blk.kvLen) { return Tile4(0.0); }
  let x = vAt(blk, key, e % D4);
  flagF16(vec4f(x), STATUS_V);
  return Tile4(x);
}

fn storeV(x: Tile4, tid: u32, i: u32, base: u32) {
  let e = tid + i * THREADS;
  if (e < V_SLICE) { slices[base + e] = x; }
}

// Query row (within the block) of an invocation's i-th row.
fn rowOf(rowGroup: u32, i: u32) -> u32 {
  return rowGroup + i * ROW_GROUPS;
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) groups: vec3u, @builtin(local_invocation_index) tid: u32) {
  let b = wg.z;
  let at = headAndQStart(wg, groups);
  let hq = at.x;
  let hkv = hq / params.groupSize;
  let seqQ = params.seqQ;
  let kvLen = min(params.kvLen[b], params.seqK);
  let qStart = at.y;
  let rows = min(BLOCK_Q, seqQ - qStart);
  let offset = i32(kvLen) - i32(seqQ);
  let rowGroup = tid / THREADS_PER_ROW;
  let lane = tid % THREADS_PER_ROW;
  let kvb = kvBases(b, hkv);
  let blk = Block(b * params.qBatch + hq * params.qHead, kvb.x, kvb.y, qStart, rows, kvLen, params.qSeq, params.kSeq, params.vSeq, params.scaleLog2);
  // This invocation's row vectors start here within a key's (P) or a lane's (scratch) RV_PITCH4.
  let rv = rowGroup * ROW4;

  // Key blocks outside [firstBlock, endBlock) are empty for every row of this block.
  let mp = maskParams();
  let range = keyBlockRange(mp, qStart, rows, kvLen, offset);
  let firstBlock = range.x;
  let endBlock = range.y;

  // Register arrays: every index below is a constant after unrolling. Row i of
  // a row vector is component i % 4 of vec4 i / 4.
  var m: array<f32, ROWS_PER_THREAD>;
  var l: array<f32, ROWS_PER_THREAD>;
  var acc: array<vec4f, ROWS_PER_THREAD * DIMS4_PER_THREAD>;
  var s: array<f32, ROWS_PER_THREAD * COLS_PER_THREAD>;
  var qkNext: array<Tile4, QK_LOADS>;
  var vNext: array<Tile4, V_LOADS>;
  var col4: array<u32, DIMS4_PER_THREAD>;
  //#for i in ROWS_PER_THREAD
  m[{i}] = NEG_BIG;
  l[{i}] = 0.0;
  //#endfor
  // (acc starts at zero: WGSL zero-initialises function-scope variables.)
  // Output vec4 columns; when THREADS_PER_ROW does not divide D4 the surplus repeat the last (never stored).
  //#for t in DIMS4_PER_THREAD
  col4[{t}] = min(lane + {t}u * THREADS_PER_ROW, D4 - 1u);
  //#endfor

  // Slices staged so far: picks the buffer of the next one.
  var step = 0u;
  if (firstBlock < endBlock) {
    //#for i in QK_LOADS
    qkNext[{i}] = loadQK(blk, firstBlock * BLOCK_KV, tid, {i}u, 0u);
    //#endfor
  }

  for (var kb = firstBlock; kb < endBlock; kb++) {
    let kStart = kb * BLOCK_KV;

    // ---- S = (Q·scale·log2 e)·Kᵀ, streamed over head-dim slices ----
    //#for i in ROWS_PER_THREAD
    //#for j in COLS_PER_THREAD
    s[{i}u * COLS_PER_THREAD + {j}u] = 0.0;
    //#endfor
    //#endfor
    for (var ds = 0u; ds < D_SLICES; ds++) {
      let base = (step % KV_STAGES) * STAGE4;
      step++;
      // Single-buffered: wait until everyone is done with the buffer we overwrite.
      if (KV_STAGES == 1u) { workgroupBarrier(); }
      //#for i in QK_LOADS
      storeQK(qkNext[{i}], tid, {i}u, base);
      //#endfor
      workgroupBarrier();
      // Prefetch the next slice: Q·Kᵀ's next, or after the last one P·V's first.
      if (ds + 1u < D_SLICES) {
        //#for i in QK_LOADS
        qkNext[{i}] = loadQK(blk, kStart, tid, {i}u, ds + 1u);
        //#endfor
      } else {
        //#for i in V_LOADS
        vNext[{i}] = loadV(blk, kStart, tid, {i}u, 0u);
        //#endfor
      }
      let kOff = base + Q_SLICE + lane * PITCH4;
      //#for c in CHUNK4
      {
        var kv: array<vec4f, COLS_PER_THREAD>;
        //#for j in COLS_PER_THREAD
        kv[{j}] = vec4f(slices[kOff + {j}u * THREADS_PER_ROW * PITCH4 + {c}u]);
        //#endfor
        // Explicit FMAs: s += dot(q, k) would cost a multiply and an add more per score.
        //#for i in ROWS_PER_THREAD
        let qv{i} = vec4f(slices[base + rowOf(rowGroup, {i}u) * PITCH4 + {c}u]);
        //#for j in COLS_PER_THREAD
        s[{i}u * COLS_PER_THREAD + {j}u] =
          fma(qv{i}.w, kv[{j}].w, fma(qv{i}.z, kv[{j}].z, fma(qv{i}.y, kv[{j}].y, fma(qv{i}.x, kv[{j}].x, s[{i}u * COLS_PER_THREAD + {j}u]))));
        //#endfor
        //#endfor
      }
      //#endfor
    }

    // ---- tiling-mask: full blocks skip this; partial ones OR their M-mask windows ----
    let edges = blockEdges(mp, qStart, rows, kStart, kvLen, offset);
    if (edges.partial) {
      //#for i in ROWS_PER_THREAD
      //#for j in COLS_PER_THREAD
      if (maskedAt(edges, rowOf(rowGroup, {i}u), lane + {j}u * THREADS_PER_ROW)) { s[{i}u * COLS_PER_THREAD + {j}u] = NEG_BIG; }
      //#endfor
      //#endfor
    }

    // ---- online softmax: row max across the THREADS_PER_ROW invocations of a row group ----
    // The Q·Kᵀ slices are done with before this scratch is written: its last reads
    // (the previous block's) come before at least one P·V barrier.
    var mx: array<vec4f, ROW4>;
    //#for i4 in ROW4
    mx[{i4}] = vec4f(NEG_BIG);
    //#endfor
    //#for i in ROWS_PER_THREAD
    //#for j in COLS_PER_THREAD
    mx[{i}u / 4u][{i}u % 4u] = max(mx[{i}u / 4u][{i}u % 4u], s[{i}u * COLS_PER_THREAD + {j}u]);
    //#endfor
    //#endfor
    //#for i4 in ROW4
    rowScratch[lane * RV_PITCH4 + rv + {i4}u] = mx[{i4}];
    //#endfor
    workgroupBarrier();
    var mRow: array<vec4f, ROW4>;
    //#for i4 in ROW4
    mRow[{i4}] = vec4f(NEG_BIG);
    for (var t = 0u; t < THREADS_PER_ROW; t++) { mRow[{i4}] = max(mRow[{i4}], rowScratch[t * RV_PITCH4 + rv + {i4}u]); }
    //#endfor
    // P as row vectors: key j of rows 4·i4 … 4·i4 + 3 is pRow[i4 · COLS_PER_THREAD + j]; lanes past ROWS_PER_THREAD stay 0.
    var pRow: array<vec4f, ROW4 * COLS_PER_THREAD>;
    //#for i in ROWS_PER_THREAD
    {
      let mNew = max(m[{i}], mRow[{i}u / 4u][{i}u % 4u]);
      let alpha = exp2(m[{i}] - mNew);
      m[{i}] = mNew;
      var sum = 0.0;
      //#for j in COLS_PER_THREAD
      let p{j} = select(exp2(s[{i}u * COLS_PER_THREAD + {j}u] - mNew), 0.0, s[{i}u * COLS_PER_THREAD + {j}u] < MASKED_BELOW);
      sum += p{j};
      pRow[({i}u / 4u) * COLS_PER_THREAD + {j}u][{i}u % 4u] = p{j};
      //#endfor
      // Each invocation keeps the partial sum of its own columns; they are added once at the end.
      l[{i}] = l[{i}] * alpha + sum;
      //#for t in DIMS4_PER_THREAD
      acc[{i}u * DIMS4_PER_THREAD + {t}u] *= alpha;
      //#endfor
    }
    //#endfor
    // P's last reads (the previous block's P·V) come before this block's Q·Kᵀ barriers.
    //#for i4 in ROW4
    //#for j in COLS_PER_THREAD
    pTile[(lane + {j}u * THREADS_PER_ROW) * RV_PITCH4 + rv + {i4}u] = pRow[{i4}u * COLS_PER_THREAD + {j}u];
    //#endfor
    //#endfor

    // ---- O += P·V, streamed over key slices ----
    for (var ks = 0u; ks < KV_SLICES; ks++) {
      let base = (step % KV_STAGES) * STAGE4;
      step++;
      if (KV_STAGES == 1u) { workgroupBarrier(); }
      //#for i in V_LOADS
      storeV(vNext[{i}], tid, {i}u, base);
      //#endfor
      workgroupBarrier(); // also publishes P
      // Prefetch the next slice: P·V's next, or after the last one the next block's first Q·Kᵀ slice.
      if (ks + 1u < KV_SLICES) {
        //#for i in V_LOADS
        vNext[{i}] = loadV(blk, kStart, tid, {i}u, ks + 1u);
        //#endfor
      } else if (kb + 1u < endBlock) {
        //#for i in QK_LOADS
        qkNext[{i}] = loadQK(blk, kStart + BLOCK_KV, tid, {i}u, 0u);
        //#endfor
      }
      //#for kk in CHUNK
      {
        var pv: array<vec4f, ROW4>;
        //#for i4 in ROW4
        pv[{i4}] = pTile[(ks * CHUNK + {kk}u) * RV_PITCH4 + rv + {i4}u];
        //#endfor
        //#for t in DIMS4_PER_THREAD
        let vx{t} = vec4f(slices[base + {kk}u * D4 + col4[{t}]]);
        //#for i in ROWS_PER_THREAD
        acc[{i}u * DIMS4_PER_THREAD + {t}u] = fma(vec4f(pv[{i}u / 4u][{i}u % 4u]), vx{t}, acc[{i}u * DIMS4_PER_THREAD + {t}u]);
        //#endfor
        //#endfor
      }
      //#endfor
    }
    // No barrier here: the next writes to this slice's buffer, to the row scratch
    // and to P all come after at least one barrier that every invocation reaches
    // only once it is done with this block (with one stage, the barrier before
    // each store; with two, the next slice goes to the other buffer).
  }

  // ---- epilogue: add the partial row sums, rescale once; rows that saw no key give 0 ----
  var part: array<vec4f, ROW4>;
  //#for i in ROWS_PER_THREAD
  part[{i}u / 4u][{i}u % 4u] = l[{i}];
  //#endfor
  //#for i4 in ROW4
  rowScratch[lane * RV_PITCH4 + rv + {i4}u] = part[{i4}];
  //#endfor
  workgroupBarrier();
  let oBase = b * params.oBatch + hq * params.oHead;
  var total: array<vec4f, ROW4>;
  //#for i4 in ROW4
  for (var t = 0u; t < THREADS_PER_ROW; t++) { total[{i4}] += rowScratch[t * RV_PITCH4 + rv + {i4}u]; }
  //#endfor
  //#for i in ROWS_PER_THREAD
  if (rowOf(rowGroup, {i}u) < rows) {
    let oRow = oBase + (qStart + rowOf(rowGroup, {i}u)) * params.oSeq;
    let sum = total[{i}u / 4u][{i}u % 4u];
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    //#for t in DIMS4_PER_THREAD
    if (lane + {t}u * THREADS_PER_ROW < D4) { o[oRow + lane + {t}u * THREADS_PER_ROW] = Store4(acc[{i}u * DIMS4_PER_THREAD + {t}u] * inv); }
    //#endfor
  }
  //#endfor
}
