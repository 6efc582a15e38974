// Split-KV decode ("flash-decoding") for 1..16 queries per sequence, reading
// K/V contiguously or through the paged KV cache (src/kvcache/pagedKvCache.ts).
//
// Entry point `main`, grid (splits, H_kv · row blocks, batch): a workgroup takes
// one KV head, the query rows that share it (G query heads × Sq queries, at most
// ROW_BLOCK of them, so K/V are read once per row block) and one slice of the keys.
// It writes the slice's unnormalised output with its row max and row sum (base 2)
// to the workspace. Entry point `combine`, grid (H_q · Sq, batch), merges the
// slices of each query row and writes O.
//
// Inside a slice, per tile of BLOCK_N keys:
//   - the K tile is staged through workgroup memory with coalesced 16-byte loads;
//     each invocation's V words for the tile are loaded at the same time, so both
//     are in flight together;
//   - S = Q·Kᵀ: invocation (key n, rows r ≡ tid / BLOCK_N mod TPK), K row from
//     workgroup memory, Q broadcast from workgroup memory;
//   - O += P·V: invocation (8-dim chunk c, key group g) owns keys n ≡ g (mod KG)
//     with its own running max and sum, so no per-tile row reduction is needed;
//     the KG partial states are merged once, at the end of the slice.
//
// Storage: every tensor is read as array<vec4u>. f16 is decoded with
// unpack2x16float (core WGSL: no `enable f16`), f32 with bitcast; arithmetic,
// softmax statistics and accumulators are f32 either way.
// The constants are defaults; src/decode/flashDecode.ts specializes them.

const HEAD_DIM: u32 = 128u;
// Storage is f16 (true) or f32.
const F16: bool = true;
// K/V come through the page table (true) or from contiguous tensors.
const PAGED: bool = false;
// Elements per vec4u word: 8 for f16, 4 for f32.
const EPW: u32 = 8u;
// Words per 8-element chunk: 1 for f16, 2 for f32.
const WPC: u32 = 1u;
const BLOCK_N: u32 = 64u;
const ROW_BLOCK: u32 = 8u;
const THREADS: u32 = 128u;

const W: u32 = HEAD_DIM / EPW;
// One spare word per K row: consecutive keys then start in distinct banks.
const K_PITCH: u32 = W + 1u;
const D4: u32 = HEAD_DIM / 4u;
const C8: u32 = HEAD_DIM / 8u;
const KG: u32 = THREADS / C8;
const KPT: u32 = (BLOCK_N + KG - 1u) / KG;
const TPK: u32 = THREADS / BLOCK_N;
const RPT: u32 = (ROW_BLOCK + TPK - 1u) / TPK;
const K_LOADS: u32 = (BLOCK_N * W + THREADS - 1u) / THREADS;
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

var<workgroup> kTile: array<vec4u, BLOCK_N * K_PITCH>;
var<workgroup> qTile: array<vec4f, ROW_BLOCK * D4>;
var<workgroup> sTile: array<f32, ROW_BLOCK * BLOCK_N>;
var<workgroup> mRed: array<f32, KG * ROW_BLOCK>;
var<workgroup> lRed: array<f32, KG>;
var<workgroup> accRed: array<vec4f, KG * D4>;

// WGSL cannot index an array of buffers: the pool is picked by a switch.
fn readPool(buf: u32, i: u32) -> vec4u {
  switch buf {
    case 0u: { return pool0[i]; }
    case 1u: { return pool1[i]; }
    case 2u: { return pool2[i]; }
    default: { return pool3[i]; }
  }
}

// (pool, word index) of word w of key `key` of sequence b, KV head h. A page-table
// entry is (pool << 28) | page within the pool, so no division is needed here.
fn kvWord(b: u32, h: u32, key: u32, isV: bool, w: u32) -> vec2u {
  if (PAGED) {
    let entry = pageTable[b * params.pageTableStride + (key >> params.pageShift)];
    let inPage = key & ((1u << params.pageShift) - 1u);
    var at = (entry & 0x0fffffffu) * params.pageWords + ((h << params.pageShift) + inPage) * W + w;
    if (isV) { at += params.vOffsetWords; }
    return vec2u(entry >> 28u, at);
  }
  if (isV) { return vec2u(1u, b * params.vBatch + h * params.vHead + key * params.vSeq + w); }
  return vec2u(0u, b * params.kBatch + h * params.kHead + key * params.kSeq + w);
}

// Eight elements from their words (f16: `lo` only; f32: `lo`, `hi`).
fn unpack8(lo: vec4u, hi: vec4u) -> array<vec4f, 2> {
  if (F16) {
    return array<vec4f, 2>(
      vec4f(unpack2x16float(lo.x), unpack2x16float(lo.y)),
      vec4f(unpack2x16float(lo.z), unpack2x16float(lo.w)));
  }
  return array<vec4f, 2>(bitcast<vec4f>(lo), bitcast<vec4f>(hi));
}

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let seqQ = params.seqQ;
  let totalRows = params.groupSize * seqQ;
  let rowBlocks = (totalRows + ROW_BLOCK - 1u) / ROW_BLOCK;
  let split = wg.x;
  let h = wg.y / rowBlocks;
  let row0 = (wg.y % rowBlocks) * ROW_BLOCK;
  let rows = min(ROW_BLOCK, totalRows - row0);
  let b = wg.z;
  let kvLen = params.kvLen[b];
  let kBegin = split * params.splitLen;
  let kEnd = min(kBegin + params.splitLen, kvLen);

  // Q rows of the block, pre-multiplied by scale·log2 e; padding rows are zero.
  for (var e = tid; e < ROW_BLOCK * C8; e += THREADS) {
    let r = e / C8;
    let c = e % C8;
    var x = array<vec4f, 2>(vec4f(0.0), vec4f(0.0));
    if (r < rows) {
      let gr = row0 + r;
      let at = b * params.qBatch + (h * params.groupSize + gr / seqQ) * params.qHead + (gr % seqQ) * params.qSeq + c * WPC;
      x = unpack8(q[at], q[at + WPC - 1u]);
    }
    qTile[r * D4 + 2u * c] = x[0] * params.scaleLog2;
    qTile[r * D4 + 2u * c + 1u] = x[1] * params.scaleLog2;
  }

  // Exclusive key limit of each QK row this invocation scores (causal: aligned to the end).
  let n = tid % BLOCK_N;
  let r0 = tid / BLOCK_N;
  var limit: array<u32, RPT>;
  for (var j = 0u; j < RPT; j++) {
    let r = r0 + j * TPK;
    limit[j] = 0u;
    if (r < rows) {
      limit[j] = kEnd;
      if (params.causal != 0u) {
        let last = i32(kvLen) - i32(seqQ) + i32((row0 + r) % seqQ) + 1;
        limit[j] = u32(clamp(last, 0, i32(kEnd)));
      }
    }
  }

  let c = tid % C8;
  let g = tid / C8;
  var m: array<f32, ROW_BLOCK>;
  var l: array<f32, ROW_BLOCK>;
  var acc: array<vec4f, 2u * ROW_BLOCK>;
  for (var r = 0u; r < ROW_BLOCK; r++) {
    m[r] = NEG_BIG;
    l[r] = 0.0;
    acc[2u * r] = vec4f(0.0);
    acc[2u * r + 1u] = vec4f(0.0);
  }

  for (var t0 = kBegin; t0 < kEnd; t0 += BLOCK_N) {
    var kRaw: array<vec4u, K_LOADS>;
    for (var i = 0u; i < K_LOADS; i++) {
      let e = tid + i * THREADS;
      kRaw[i] = vec4u(0u);
      if (e < BLOCK_N * W && t0 + e / W < kEnd) {
        let at = kvWord(b, h, t0 + e / W, false, e % W);
        kRaw[i] = readPool(at.x, at.y);
      }
    }
    var vRaw: array<vec4u, KPT * WPC>;
    for (var j = 0u; j < KPT; j++) {
      let nv = g + j * KG;
      for (var u = 0u; u < WPC; u++) {
        vRaw[j * WPC + u] = vec4u(0u);
        if (g < KG && nv < BLOCK_N && t0 + nv < kEnd) {
          let at = kvWord(b, h, t0 + nv, true, c * WPC + u);
          vRaw[j * WPC + u] = readPool(at.x, at.y);
        }
      }
    }
    for (var i = 0u; i < K_LOADS; i++) {
      let e = tid + i * THREADS;
      if (e < BLOCK_N * W) { kTile[(e / W) * K_PITCH + e % W] = kRaw[i]; }
    }
    workgroupBarrier();

    // ---- S = Q·Kᵀ (log2 units); masked and padding entries get NEG_BIG ----
    var s: array<f32, RPT>;
    for (var j = 0u; j < RPT; j++) { s[j] = 0.0; }
    for (var w = 0u; w < W; w += WPC) {
      let kx = unpack8(kTile[n * K_PITCH + w], kTile[n * K_PITCH + w + WPC - 1u]);
      let qo = (w / WPC) * 2u;
      for (var j = 0u; j < RPT; j++) {
        let r = r0 + j * TPK;
        if (r < ROW_BLOCK) { s[j] += dot(qTile[r * D4 + qo], kx[0]) + dot(qTile[r * D4 + qo + 1u], kx[1]); }
      }
    }
    for (var j = 0u; j < RPT; j++) {
      let r = r0 + j * TPK;
      if (r < ROW_BLOCK) { sTile[r * BLOCK_N + n] = select(NEG_BIG, s[j], t0 + n < limit[j]); }
    }
    workgroupBarrier();

    // ---- O += P·V over this invocation's keys, with its own running max and sum ----
    if (g < KG) {
      for (var r = 0u; r < ROW_BLOCK; r++) {
        var mx = m[r];
        for (var j = 0u; j < KPT; j++) {
          let nv = g + j * KG;
          if (nv < BLOCK_N) { mx = max(mx, sTile[r * BLOCK_N + nv]); }
        }
        let alpha = exp2(m[r] - mx);
        m[r] = mx;
        l[r] *= alpha;
        acc[2u * r] *= alpha;
        acc[2u * r + 1u] *= alpha;
      }
      for (var j = 0u; j < KPT; j++) {
        let nv = g + j * KG;
        if (nv >= BLOCK_N) { continue; }
        let vx = unpack8(vRaw[j * WPC], vRaw[j * WPC + WPC - 1u]);
        for (var r = 0u; r < ROW_BLOCK; r++) {
          let x = sTile[r * BLOCK_N + nv];
          let p = select(exp2(x - m[r]), 0.0, x < MASKED_BELOW);
          l[r] += p;
          acc[2u * r] = fma(vec4f(p), vx[0], acc[2u * r]);
          acc[2u * r + 1u] = fma(vec4f(p), vx[1], acc[2u * r + 1u]);
        }
      }
    }
    // The next tile overwrites kTile and sTile.
    workgroupBarrier();
  }

  // ---- merge the KG key groups of each row and write the slice's partial ----
  if (g < KG && c == 0u) {
    for (var r = 0u; r < ROW_BLOCK; r++) { mRed[g * ROW_BLOCK + r] = m[r]; }
  }
  workgroupBarrier();
  for (var r = 0u; r < ROW_BLOCK; r++) {
    var mAll = NEG_BIG;
    for (var gg = 0u; gg < KG; gg++) { mAll = max(mAll, mRed[gg * ROW_BLOCK + r]); }
    if (g < KG) {
      let f = exp2(m[r] - mAll);
      accRed[g * D4 + 2u * c] = acc[2u * r] * f;
      accRed[g * D4 + 2u * c + 1u] = acc[2u * r + 1u] * f;
      if (c == 0u) { lRed[g] = l[r] * f; }
    }
    workgroupBarrier();
    if (r < rows) {
      let gr = row0 + r;
      let hq = h * params.groupSize + gr / seqQ;
      let slot = (((b * params.headsQ + hq) * seqQ + gr % seqQ) * params.maxSplits + split) * (D4 + 1u);
      for (var d = tid; d < D4; d += THREADS) {
        var sum = vec4f(0.0);
        for (var gg = 0u; gg < KG; gg++) { sum += accRed[gg * D4 + d]; }
        work[slot + d] = sum;
      }
      if (tid == 0u) {
        var lAll = 0.0;
        for (var gg = 0u; gg < KG; gg++) { lAll += lRed[gg]; }
        work[slot + D4] = vec4f(mAll, lAll, 0.0, 0.0);
      }
    }
    workgroupBarrier();
  }
}

// One workgroup per query row (b, hq, i): merge its slices, normalise, store O.
// Invocation (d, lane) merges slices lane, lane + LANES, … of output word d with
// a running (max, sum), loading UNROLL slices at a time so their loads overlap;
// the LANES partial states are then merged through workgroup memory.
const C_THREADS: u32 = 256u;
const LANES: u32 = C_THREADS / D4;
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
  if (lane < LANES) {
    for (var s0 = lane; s0 < params.numSplits; s0 += LANES * UNROLL) {
      var ml: array<vec4f, UNROLL>;
      var part: array<vec4f, UNROLL>;
      for (var u = 0u; u < UNROLL; u++) {
        let s = s0 + u * LANES;
        ml[u] = vec4f(NEG_BIG, 0.0, 0.0, 0.0);
        part[u] = vec4f(0.0);
        if (s < params.numSplits) {
          let slot = (base + s) * (D4 + 1u);
          ml[u] = work[slot + D4];
          part[u] = work[slot + d];
        }
      }
      for (var u = 0u; u < UNROLL; u++) {
        let mNew = max(m, ml[u].x);
        let fOld = exp2(m - mNew);
        let fNew = exp2(ml[u].x - mNew);
        l = l * fOld + ml[u].y * fNew;
        acc = acc * fOld + part[u] * fNew;
        m = mNew;
      }
    }
  }
  cM[tid] = m;
  cL[tid] = l;
  cAcc[tid] = acc;
  workgroupBarrier();
  if (tid >= D4) { return; }
  var mAll = NEG_BIG;
  for (var k = 0u; k < LANES; k++) { mAll = max(mAll, cM[k * D4 + tid]); }
  var lAll = 0.0;
  var sum = vec4f(0.0);
  for (var k = 0u; k < LANES; k++) {
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
