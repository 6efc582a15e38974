// Decode attention over a host-resident KV cache, in WebAssembly SIMD (AssemblyScript).
//
// Built by `npm run build:wasm` into dist/wasm/offload.wasm. The module imports one
// shared linear memory that holds the KV cache, the queries, the partial outputs and
// every worker's scratch; every argument below is a byte address into it, so worker
// threads read the cache in place, with no copies. Nothing here allocates, and the
// module has no static data (each worker instantiates it on the same memory).
//
// One call handles one (sequence, KV head) pair and one range of keys [j0, j1): the
// G query heads that share the KV head are processed together, so each K and V row
// is read from memory once per step however many query heads use it (GQA). Keys are
// taken in blocks: scores of a block, one rescale of the accumulators per block
// (online softmax, base 2), then the V rows of the block. The result is the
// unnormalized partial (m, l, acc) of FlashDecoding, merged by the caller across
// key ranges.

const BLOCK: i32 = 64;
const TWO_POW_112: f32 = 5.192296858534828e33;

// Four f16 (8 bytes at p) to four f32: rebias by multiplying, which also handles
// subnormals; Inf/NaN get their exponent back explicitly.
// @ts-ignore: decorator
@inline function loadHalf4(p: usize): v128 {
  const h = i32x4.extend_low_i16x8_u(v128.load64_zero(p));
  const em = v128.and(h, i32x4.splat(0x7fff));
  let f = f32x4.mul(i32x4.shl(em, 13), f32x4.splat(TWO_POW_112));
  f = v128.or(f, v128.and(i32x4.gt_s(em, i32x4.splat(0x7bff)), i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

// 2^x for x ≤ 0 without lookup tables (the module must carry no data segment):
// x = n + f with n = round(x), f ∈ [-½, ½]; degree-6 Taylor of e^(f·ln2), relative
// error below 2e-7; 2^n assembled in the exponent bits. Underflow (and −∞) gives 0.
// @ts-ignore: decorator
@inline function exp2neg(x: f32): f32 {
  if (x < -126) return 0;
  const n: f32 = nearest<f32>(x);
  const f: f32 = (x - n) * <f32>0.6931471805599453;
  const p: f32 = <f32>1 + f * (<f32>1 + f * (<f32>0.5 + f * (<f32>0.16666666666666666 + f * (<f32>0.041666666666666664 + f * (<f32>0.008333333333333333 + f * <f32>0.001388888888888889)))));
  return p * reinterpret<f32>((<i32>n + 127) << 23);
}

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

function dotF32(q: usize, k: usize, D: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  for (let d = 0; d < D; d += 8) {
    const o = <usize>(d << 2);
    a0 = f32x4.add(a0, f32x4.mul(v128.load(q + o), v128.load(k + o)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(q + o + 16), v128.load(k + o + 16)));
  }
  return hsum(f32x4.add(a0, a1));
}

function dotF16(q: usize, k: usize, D: i32): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  for (let d = 0; d < D; d += 8) {
    a0 = f32x4.add(a0, f32x4.mul(v128.load(q + <usize>(d << 2)), loadHalf4(k + <usize>(d << 1))));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(q + <usize>(d << 2) + 16), loadHalf4(k + <usize>(d << 1) + 8)));
  }
  return hsum(f32x4.add(a0, a1));
}

// acc[0..D) += p · v[0..D)
function axpyF32(acc: usize, v: usize, p: f32, D: i32): void {
  const pv = f32x4.splat(p);
  for (let d = 0; d < D; d += 4) {
    const o = <usize>(d << 2);
    v128.store(acc + o, f32x4.add(v128.load(acc + o), f32x4.mul(pv, v128.load(v + o))));
  }
}

function axpyF16(acc: usize, v: usize, p: f32, D: i32): void {
  const pv = f32x4.splat(p);
  for (let d = 0; d < D; d += 4) {
    const o = <usize>(d << 2);
    v128.store(acc + o, f32x4.add(v128.load(acc + o), f32x4.mul(pv, loadHalf4(v + <usize>(d << 1)))));
  }
}

function scaleRow(acc: usize, c: f32, D: i32): void {
  const cv = f32x4.splat(c);
  for (let d = 0; d < D; d += 4) {
    const o = <usize>(d << 2);
    v128.store(acc + o, f32x4.mul(v128.load(acc + o), cv));
  }
}

/**
 * Partial attention of G query heads (rows of D f32 at q) over keys [j0, j1) of one
 * KV head whose rows start at k / v (D elements each, f32 or f16).
 * Writes acc (G×D f32, unnormalized), stats (G×2 f32: running max m in log2 units, sum l).
 * scratch: G×BLOCK f32. scaleLog2 = softmax scale · log2(e). D is a multiple of 8.
 */
export function attendPartial(
  q: usize, k: usize, v: usize, acc: usize, stats: usize, scratch: usize,
  G: i32, D: i32, j0: i32, j1: i32, scaleLog2: f32, half: i32,
): void {
  const rowBytes = <usize>(D << (half ? 1 : 2));
  const qBytes = <usize>(D << 2);
  for (let g = 0; g < G; g++) {
    memory.fill(acc + <usize>g * qBytes, 0, qBytes);
    store<f32>(stats + <usize>(g << 3), -Infinity);
    store<f32>(stats + <usize>(g << 3) + 4, 0);
  }
  for (let b0 = j0; b0 < j1; b0 += BLOCK) {
    const n = min(BLOCK, j1 - b0);
    // Scores of the block, for every query head of the group.
    for (let jj = 0; jj < n; jj++) {
      const kr = k + <usize>(b0 + jj) * rowBytes;
      for (let g = 0; g < G; g++) {
        const s = (half ? dotF16(q + <usize>g * qBytes, kr, D) : dotF32(q + <usize>g * qBytes, kr, D)) * scaleLog2;
        store<f32>(scratch + (<usize>(g * BLOCK + jj) << 2), s);
      }
    }
    // One rescale per block and head, then probabilities in place.
    for (let g = 0; g < G; g++) {
      const row = scratch + (<usize>(g * BLOCK) << 2);
      let mx = load<f32>(stats + <usize>(g << 3));
      for (let jj = 0; jj < n; jj++) mx = max(mx, load<f32>(row + (<usize>jj << 2)));
      const mOld = load<f32>(stats + <usize>(g << 3));
      const corr = exp2neg(mOld - mx);
      let l = load<f32>(stats + <usize>(g << 3) + 4) * corr;
      if (corr != 1) scaleRow(acc + <usize>g * qBytes, corr, D);
      for (let jj = 0; jj < n; jj++) {
        const p = exp2neg(load<f32>(row + (<usize>jj << 2)) - mx);
        store<f32>(row + (<usize>jj << 2), p);
        l += p;
      }
      store<f32>(stats + <usize>(g << 3), mx);
      store<f32>(stats + <usize>(g << 3) + 4, l);
    }
    // P·V of the block: each V row once, for every head of the group.
    for (let jj = 0; jj < n; jj++) {
      const vr = v + <usize>(b0 + jj) * rowBytes;
      for (let g = 0; g < G; g++) {
        const p = load<f32>(scratch + (<usize>(g * BLOCK + jj) << 2));
        if (half) axpyF16(acc + <usize>g * qBytes, vr, p, D);
        else axpyF32(acc + <usize>g * qBytes, vr, p, D);
      }
    }
  }
}

/** Read `bytes` (a multiple of 64) at p with SIMD loads: the read-bandwidth ceiling. */
export function streamRead(p: usize, bytes: usize): f32 {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  for (let o: usize = 0; o < bytes; o += 64) {
    a0 = f32x4.add(a0, v128.load(p + o));
    a1 = f32x4.add(a1, v128.load(p + o + 16));
    a2 = f32x4.add(a2, v128.load(p + o + 32));
    a3 = f32x4.add(a3, v128.load(p + o + 48));
  }
  return hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
}

/** memory.copy: the copy-bandwidth ceiling. */
export function copyBytes(dst: usize, src: usize, bytes: usize): void {
  memory.copy(dst, src, bytes);
}
