// Split-KV decode ("flash-decoding") for 1..16 queries per sequence, reading
// K/V contiguously or through the paged KV cache (src/kvcache/pagedKvCache.ts).
//
// Entry point `main`, grid (row blocks · splits, H_kv, batch): a workgroup takes
// one KV head, the query rows that share it (G query heads × Sq queries, at most
// ROWS of them, so K/V are read once per row block) and one slice of the keys.
// It writes the slice's unnormalised output with its row max and row sum (base 2)
// to the workspace. Entry point `combine`, grid (H_q · Sq, batch), merges the
// slices of each query row and writes O.
//
// The slice is streamed in steps of STEP = SLOTS · KU keys. Invocation
// (slot, lane) owns words [lane·CW, lane·CW + CW) of every key row it reads
// (LANES lanes cover a row: coalesced 16-byte loads) and keys t0 + u·SLOTS + slot,
// u < KU, of each step. Per-row state is vectorised over rows: component c of a
// vec4 belongs to row 4g + c of row group g, so scores, max, sum and the P·V
// accumulators of four rows cost one vec4 operation and no row-indexed arrays.
//   1. its K and V words for the step are in registers (loaded one step ahead
//      when PREFETCH);
//   2. partial dots of its K words with its Q dims are summed over the LANES
//      lanes of the key row: with SUBGROUPS by a shuffle butterfly (no barrier;
//      needs LANES a power of two ≤ the subgroup size, and a workgroup's
//      subgroups made of consecutive invocations), otherwise through workgroup
//      memory (two barriers per step);
//   3. each invocation masks the scores (causal / length), updates its slot's
//      running max and sum (every lane of a slot sees the same scores) and
//      accumulates P·V for its dims — V never leaves registers.
// The SLOTS partial states are merged once, at the end of the slice.
//
// Storage: every tensor is read as array<vec4u>. f16 is widened to f32 with
// unpack2x16float (core WGSL) or, with shader-f16 (NATIVE_F16), by a vector
// conversion of the bitcast halves; f32 with bitcast. Arithmetic, softmax
// statistics and accumulators are f32 either way.
//
// The constants are defaults; src/decode/flashDecode.ts specializes them, and
// keeps or drops the `//#if NAME` … `//#else` … `//#endif` sections (features a
// device may lack: the file as a whole needs `enable f16; enable subgroups;`).
// Loops over register arrays (K/V words, Q, scores, max/sum, accumulators) are
// `//#for VAR in COUNT` blocks unrolled by the pipeline cache (src/runtime/wgslUnroll.ts),
// counts from decodeKernelCounts (src/decode/decodePlan.ts): the H100 driver kept arrays
// indexed by loop counters in memory when it did not unroll the loop. So no
// `for` below indexes a function-scope array with its counter.

const HEAD_DIM: u32 = 128u;
// Storage is f16 (true) or f32.
const F16: bool = true;
// K/V come through the page table (true) or from contiguous tensors.
const PAGED: bool = false;
// Page pool buffers bound (paged only): 1 needs no per-load buffer switch.
const POOLS: u32 = 1u;
// Elements per 16-byte word: 8 for f16, 4 for f32.
const EPW: u32 = 8u;
// Words of a key row per lane, lanes per key row (CW · LANES = HEAD_DIM / EPW).
const CW: u32 = 1u;
const LANES: u32 = 16u;
// Key slots per workgroup, keys per slot per step.
const SLOTS: u32 = 16u;
const KU: u32 = 4u;
// Query rows per workgroup.
const ROWS: u32 = 4u;
// Load the next step's K/V before computing this one.
const PREFETCH: bool = false;
// Lanes reduce with subgroup shuffles (mirrors the SUBGROUPS section flag).
const SUBGROUPS: bool = true;

const THREADS: u32 = LANES * SLOTS;
const STEP: u32 = SLOTS * KU;
const W: u32 = HEAD_DIM / EPW;
// Row groups of four rows.
const R4: u32 = (ROWS + 3u) / 4u;
// vec4s of dims per word and per lane.
const VPW: u32 = EPW / 4u;
const DV: u32 = CW * VPW;
const D4: u32 = HEAD_DIM / 4u;
// Partials of lane l start at l · P_STRIDE (f32s); the odd stride spreads the lanes' stores over banks.
const P_STRIDE: u32 = STEP * R4 * 4u + 1u;
// The partials buffer (workgroup-memory reduction) doubles as the slot-merge buffer at the end.
const PART: u32 = select(max(LANES * P_STRIDE, SLOTS * HEAD_DIM), SLOTS * HEAD_DIM, SUBGROUPS);
// Finite stand-in for −∞: exp2(x − m) stays well defined for rows that saw no key yet.
const NEG_BIG: f32 = -1.0e30;
const MASKED_BELOW: f32 = -1.0e29;

struct Params {
  seqQ: u32,
  groupSize: u32,
  headsQ: u32,
  causal: u32,
  numSplits: u32,
  splitLen: u32,
  maxSplits: u32,
  scaleLog2: f32,
  // Q and contiguous K/V strides in words; O strides in elements.
  qBatch: u32, qHead: u32, qSeq: u32,
  kBatch: u32, kHead: u32, kSeq: u32,
  vBatch: u32, vHead: u32, vSeq: u32,
  oBatch: u32, oHead: u32, oSeq: u32,
  // Paged geometry: log2 of tokens per page, words per page, offset of the V
  // half of a page, page-table entries per sequence.
  pageShift: u32,
  pageWords: u32,
  vOffsetWords: u32,
  pageTableStride: u32,
  kvLen: array<u32>,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4u>;
// Contiguous: pool0 = K, pool1 = V. Paged: the cache's page pools (at most 4).
@group(0) @binding(2) var<storage, read> pool0: array<vec4u>;
@group(0) @binding(3) var<storage, read> pool1: array<vec4u>;
@group(0) @binding(4) var<storage, read> pool2: array<vec4u>;
@group(0) @binding(5) var<storage, read> pool3: array<vec4u>;
@group(0) @binding(6) var<storage, read> pageTable: array<u32>;
// Per (b, hq, query, split): D4 words of unnormalised output, then (max, sum, 0, 0).
@group(0) @binding(7) var<storage, read_write> work: array<vec4f>;
@group(0) @binding(8) var<storage, read_write> o: array<u32>;

var<workgroup> part: array<f32, PART>;
var<workgroup> scores: array<vec4f, STEP * R4>;
var<workgroup> slotM: array<vec4f, SLOTS * R4>;
var<workgroup> slotL: array<vec4f, SLOTS * R4>;

// CW consecutive words of pool `buf` from word i. WGSL cannot index an array of
// buffers: the pool is picked by branches, once per word block, not per word.
// (With the key loop unrolled, a `switch` here made SwiftShader's compile of
// the paged kernel take minutes; an if chain compiles in seconds.)
fn readPool(buf: u32, i: u32) -> array<vec4u, CW> {
  var w: array<vec4u, CW>;
  if (POOLS == 1u || buf == 0u) {
    //#for c in CW
    w[{c}u] = pool0[i + {c}u];
    //#endfor
  } else if (buf == 1u) {
    //#for c in CW
    w[{c}u] = pool1[i + {c}u];
    //#endfor
  } else if (buf == 2u) {
    //#for c in CW
    w[{c}u] = pool2[i + {c}u];
    //#endfor
  } else {
    //#for c in CW
    w[{c}u] = pool3[i + {c}u];
    //#endfor
  }
  return w;
}

struct KV {
  k: array<vec4u, KU * CW>,
  v: array<vec4u, KU * CW>,
}

// This invocation's K and V words of the step starting at key t0. Keys past the
// slice are clamped to its last key (their scores are masked), so every load is
// issued unconditionally and all of them are in flight together.
fn loadStep(b: u32, h: u32, t0: u32, last: u32, slot: u32, lane: u32) -> KV {
  var r: KV;
  //#for u in KU
  {
    let key = min(t0 + {u}u * SLOTS + slot, last);
    if (PAGED) {
      // A page-table entry is (pool << 28) | page within the pool.
      let entry = pageTable[b * params.pageTableStride + (key >> params.pageShift)];
      let inPage = key & ((1u << params.pageShift) - 1u);
      let at = (entry & 0x0fffffffu) * params.pageWords + ((h << params.pageShift) + inPage) * W + lane * CW;
      let kw = readPool(entry >> 28u, at);
      let vw = readPool(entry >> 28u, at + params.vOffsetWords);
      //#for c in CW
      r.k[{u}u * CW + {c}u] = kw[{c}u];
      r.v[{u}u * CW + {c}u] = vw[{c}u];
      //#endfor
    } else {
      let kAt = b * params.kBatch + h * params.kHead + key * params.kSeq + lane * CW;
      let vAt = b * params.vBatch + h * params.vHead + key * params.vSeq + lane * CW;
      //#for c in CW
      r.k[{u}u * CW + {c}u] = pool0[kAt + {c}u];
      r.v[{u}u * CW + {c}u] = pool1[vAt + {c}u];
      //#endfor
    }
  }
  //#endfor
  return r;
}

// Dims [4·hi, 4·hi + 4) of a 16-byte word as f32 (f32 words hold exactly four).
fn widen(word: vec4u, hi: bool) -> vec4f {
  if (F16) {
    let h = select(word.xy, word.zw, hi);
//#if NATIVE_F16
    return vec4f(bitcast<vec4<f16>>(h));
//#else
    return vec4f(unpack2x16float(h.x), unpack2x16float(h.y));
//#endif
  }
  return bitcast<vec4f>(word);
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let seqQ = params.seqQ;
  let totalRows = params.groupSize * seqQ;
  let rowBlocks = (totalRows + ROWS - 1u) / ROWS;
  // Row blocks of one slice are neighbours in the grid: their K/V reads meet in L2.
  let split = wg.x / rowBlocks;
  let row0 = (wg.x % rowBlocks) * ROWS;
  let rows = min(ROWS, totalRows - row0);
  let h = wg.y;
  let b = wg.z;
  let kvLen = params.kvLen[b];
  let kBegin = split * params.splitLen;
  let kEnd = min(kBegin + params.splitLen, kvLen);
  let lane = tid % LANES;
  let slot = tid / LANES;

  // Per row: exclusive key limit (causal: aligned to the end; padding rows see
  // nothing) and this lane's Q dims pre-multiplied by scale·log2 e, transposed
  // so that qT[j·R4 + g] holds dim j of row group g. Both start as zeros.
  var lim: array<vec4u, R4>;
  var qT: array<vec4f, DV * 4u * R4>;
  //#for r in ROWS4
  if ({r}u < rows) {
    let gr = row0 + {r}u;
    var rl = kEnd;
    if (params.causal != 0u) {
      let last = i32(kvLen) - i32(seqQ) + i32(gr % seqQ) + 1;
      rl = u32(clamp(last, 0, i32(kEnd)));
    }
    lim[{r}u / 4u][{r}u % 4u] = rl;
    let at = b * params.qBatch + (h * params.groupSize + gr / seqQ) * params.qHead + (gr % seqQ) * params.qSeq + lane * CW;
    //#for d in DV
    let x{d} = widen(q[at + {d}u / VPW], {d}u % VPW == 1u) * params.scaleLog2;
    qT[(4u * {d}u) * R4 + {r}u / 4u][{r}u % 4u] = x{d}.x;
    qT[(4u * {d}u + 1u) * R4 + {r}u / 4u][{r}u % 4u] = x{d}.y;
    qT[(4u * {d}u + 2u) * R4 + {r}u / 4u][{r}u % 4u] = x{d}.z;
    qT[(4u * {d}u + 3u) * R4 + {r}u / 4u][{r}u % 4u] = x{d}.w;
    //#endfor
  }
  //#endfor

  var m: array<vec4f, R4>;
  var l: array<vec4f, R4>;
  var acc: array<vec4f, DV * 4u * R4>;
  //#for g in R4
  m[{g}u] = vec4f(NEG_BIG);
  l[{g}u] = vec4f(0.0);
  //#endfor

  let last = max(kEnd, 1u) - 1u;
  var cur = loadStep(b, h, kBegin, last, slot, lane);
  for (var t0 = kBegin; t0 < kEnd; t0 += STEP) {
    var next: KV;
    if (PREFETCH) { next = loadStep(b, h, t0 + STEP, last, slot, lane); }

    // ---- partial Q·Kᵀ over this lane's dims, four rows per vec4 ----
    var sc: array<vec4f, KU * R4>;
    //#for u in KU
    //#for g in R4
    {
      var s = vec4f(0.0);
      //#for d in DV
      let kx{d} = widen(cur.k[{u}u * CW + {d}u / VPW], {d}u % VPW == 1u);
      s = fma(qT[(4u * {d}u) * R4 + {g}u], vec4f(kx{d}.x), s);
      s = fma(qT[(4u * {d}u + 1u) * R4 + {g}u], vec4f(kx{d}.y), s);
      s = fma(qT[(4u * {d}u + 2u) * R4 + {g}u], vec4f(kx{d}.z), s);
      s = fma(qT[(4u * {d}u + 3u) * R4 + {g}u], vec4f(kx{d}.w), s);
      //#endfor
//#if SUBGROUPS
      // Butterfly over the slot's lanes (a power of two, aligned in the subgroup);
      // constant masks, no loop.
      if (LANES > 1u) { s += subgroupShuffleXor(s, 1u); }
      if (LANES > 2u) { s += subgroupShuffleXor(s, 2u); }
      if (LANES > 4u) { s += subgroupShuffleXor(s, 4u); }
      if (LANES > 8u) { s += subgroupShuffleXor(s, 8u); }
      if (LANES > 16u) { s += subgroupShuffleXor(s, 16u); }
//#endif
      sc[{u}u * R4 + {g}u] = s;
    }
    //#endfor
    //#endfor

//#if SUBGROUPS
//#else
    // ---- sum the partials over the key row's lanes through workgroup memory (scalars: every invocation sums) ----
    //#for u in KU
    //#for g in R4
    {
      let at = lane * P_STRIDE + ({u}u * SLOTS + slot) * R4 * 4u + {g}u * 4u;
      part[at] = sc[{u}u * R4 + {g}u].x;
      part[at + 1u] = sc[{u}u * R4 + {g}u].y;
      part[at + 2u] = sc[{u}u * R4 + {g}u].z;
      part[at + 3u] = sc[{u}u * R4 + {g}u].w;
    }
    //#endfor
    //#endfor
    workgroupBarrier();
    for (var e = tid; e < STEP * R4 * 4u; e += THREADS) {
      var s = 0.0;
      for (var ln = 0u; ln < LANES; ln++) { s += part[ln * P_STRIDE + e]; }
      scores[e / 4u][e % 4u] = s;
    }
    workgroupBarrier();
    //#for u in KU
    //#for g in R4
    sc[{u}u * R4 + {g}u] = scores[({u}u * SLOTS + slot) * R4 + {g}u];
    //#endfor
    //#endfor
//#endif

    // ---- mask (log2 units), online softmax and O += P·V over this slot's keys ----
    //#for g in R4
    {
      var mx = m[{g}u];
      //#for u in KU
      let key{u} = t0 + {u}u * SLOTS + slot;
      sc[{u}u * R4 + {g}u] = select(vec4f(NEG_BIG), sc[{u}u * R4 + {g}u], vec4u(key{u}) < lim[{g}u]);
      mx = max(mx, sc[{u}u * R4 + {g}u]);
      //#endfor
      let alpha = exp2(m[{g}u] - mx);
      m[{g}u] = mx;
      l[{g}u] *= alpha;
      //#for j in DV4
      acc[{j}u * R4 + {g}u] *= alpha;
      //#endfor
    }
    //#endfor
    //#for u in KU
    //#for g in R4
    {
      let x = sc[{u}u * R4 + {g}u];
      let p = select(exp2(x - m[{g}u]), vec4f(0.0), x < vec4f(MASKED_BELOW));
      l[{g}u] += p;
      //#for d in DV
      let vx{d} = widen(cur.v[{u}u * CW + {d}u / VPW], {d}u % VPW == 1u);
      acc[(4u * {d}u) * R4 + {g}u] = fma(p, vec4f(vx{d}.x), acc[(4u * {d}u) * R4 + {g}u]);
      acc[(4u * {d}u + 1u) * R4 + {g}u] = fma(p, vec4f(vx{d}.y), acc[(4u * {d}u + 1u) * R4 + {g}u]);
      acc[(4u * {d}u + 2u) * R4 + {g}u] = fma(p, vec4f(vx{d}.z), acc[(4u * {d}u + 2u) * R4 + {g}u]);
      acc[(4u * {d}u + 3u) * R4 + {g}u] = fma(p, vec4f(vx{d}.w), acc[(4u * {d}u + 3u) * R4 + {g}u]);
      //#endfor
    }
    //#endfor
    //#endfor
    if (PREFETCH) { cur = next; } else { cur = loadStep(b, h, t0 + STEP, last, slot, lane); }
  }

  // ---- merge the SLOTS partial states of each row and write the slice's partial ----
  if (lane == 0u) {
    //#for g in R4
    slotM[slot * R4 + {g}u] = m[{g}u];
    slotL[slot * R4 + {g}u] = l[{g}u];
    //#endfor
  }
  workgroupBarrier();
  //#for g in R4
  {
    var mMax = vec4f(NEG_BIG);
    for (var s = 0u; s < SLOTS; s++) { mMax = max(mMax, slotM[s * R4 + {g}u]); }
    let mAll = mMax;
    let f = exp2(m[{g}u] - mAll);
    for (var c = 0u; c < 4u; c++) {
      let r = 4u * {g}u + c;
      // Uniform: every invocation takes the same branches around the barriers.
      if (r >= rows) { break; }
      // Component c of a vec4 value: acc itself is indexed by constants only.
      //#for j in DV4
      part[slot * HEAD_DIM + lane * DV * 4u + {j}u] = (acc[{j}u * R4 + {g}u] * f)[c];
      //#endfor
      workgroupBarrier();
      let gr = row0 + r;
      let hq = h * params.groupSize + gr / seqQ;
      let base = (((b * params.headsQ + hq) * seqQ + gr % seqQ) * params.maxSplits + split) * (D4 + 1u);
      for (var e = tid; e < D4; e += THREADS) {
        var sum = vec4f(0.0);
        for (var s = 0u; s < SLOTS; s++) {
          let at = s * HEAD_DIM + 4u * e;
          sum += vec4f(part[at], part[at + 1u], part[at + 2u], part[at + 3u]);
        }
        work[base + e] = sum;
      }
      if (tid == 0u) {
        var lAll = 0.0;
        for (var s = 0u; s < SLOTS; s++) { lAll += slotL[s * R4 + {g}u][c] * exp2(slotM[s * R4 + {g}u][c] - mAll[c]); }
        work[base + D4] = vec4f(mAll[c], lAll, 0.0, 0.0);
      }
      workgroupBarrier();
    }
  }
  //#endfor
}

// One workgroup per query row (b, hq, i): merge its slices, normalise, store O.
// Invocation (d, lane) merges slices lane, lane + LANES, … of output word d with
// a running (max, sum), loading UNROLL slices at a time so their loads overlap;
// the C_LANES partial states are then merged through workgroup memory.
const C_THREADS: u32 = 256u;
const C_LANES: u32 = C_THREADS / D4;
const UNROLL: u32 = 4u;

var<workgroup> cM: array<f32, C_THREADS>;
var<workgroup> cL: array<f32, C_THREADS>;
var<workgroup> cAcc: array<vec4f, C_THREADS>;

@compute @workgroup_size(C_THREADS)
fn combine(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let b = wg.y;
  let hq = wg.x / params.seqQ;
  let i = wg.x % params.seqQ;
  let base = ((b * params.headsQ + hq) * params.seqQ + i) * params.maxSplits;
  let d = tid % D4;
  let lane = tid / D4;
  var m = NEG_BIG;
  var l = 0.0;
  var acc = vec4f(0.0);
  if (lane < C_LANES) {
    for (var s0 = lane; s0 < params.numSplits; s0 += C_LANES * UNROLL) {
      var ml: array<vec4f, UNROLL>;
      var part: array<vec4f, UNROLL>;
      //#for u in UNROLL
      ml[{u}u] = vec4f(NEG_BIG, 0.0, 0.0, 0.0);
      part[{u}u] = vec4f(0.0);
      if (s0 + {u}u * C_LANES < params.numSplits) {
        let slot = (base + s0 + {u}u * C_LANES) * (D4 + 1u);
        ml[{u}u] = work[slot + D4];
        part[{u}u] = work[slot + d];
      }
      //#endfor
      //#for u in UNROLL
      {
        let mNew = max(m, ml[{u}u].x);
        let fOld = exp2(m - mNew);
        let fNew = exp2(ml[{u}u].x - mNew);
        l = l * fOld + ml[{u}u].y * fNew;
        acc = acc * fOld + part[{u}u] * fNew;
        m = mNew;
      }
      //#endfor
    }
  }
  cM[tid] = m;
  cL[tid] = l;
  cAcc[tid] = acc;
  workgroupBarrier();
  if (tid >= D4) { return; }
  var mAll = NEG_BIG;
  for (var k = 0u; k < C_LANES; k++) { mAll = max(mAll, cM[k * D4 + tid]); }
  var lAll = 0.0;
  var sum = vec4f(0.0);
  for (var k = 0u; k < C_LANES; k++) {
    let f = exp2(cM[k * D4 + tid] - mAll);
    lAll += cL[k * D4 + tid] * f;
    sum = fma(vec4f(f), cAcc[k * D4 + tid], sum);
  }
  // A row that saw no key (all keys masked, or kvLen = 0) outputs zeros.
  let x = sum * select(0.0, 1.0 / lAll, lAll > 0.0);
  let e = b * params.oBatch + hq * params.oHead + i * params.oSeq + 4u * tid;
  if (F16) {
    o[e / 2u] = pack2x16float(x.xy);
    o[e / 2u + 1u] = pack2x16float(x.zw);
  } else {
    o[e] = bitcast<u32>(x.x);
    o[e + 1u] = bitcast<u32>(x.y);
    o[e + 2u] = bitcast<u32>(x.z);
    o[e + 3u] = bitcast<u32>(x.w);
  }
}
