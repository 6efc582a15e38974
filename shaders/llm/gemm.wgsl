// Prefill matrix product of the LLM runner: C[M, N] (+)= A[M, K] · W[N, K]ᵀ.
// A is activations (row-major, K contiguous) as words: f32, or packed f16 pairs when
// A_F16 (the attention output of the f16 path); W is a linear layer's weight
// in the checkpoint's [out, in] order, stored as words: f32 (one value per word)
// or f16 packed two per word (unpack2x16float, core WGSL, so f16 weights work on
// adapters without shader-f16). Accumulation is always f32.
//
// A workgroup computes a TILE_M × TILE_N block of C; each invocation a TM × TN
// register tile whose rows and columns are strided by the thread grid, so that
// neighbouring invocations read neighbouring workgroup-memory words and write
// neighbouring C columns. K advances TILE_K at a time through workgroup memory,
// A and W both staged k-major so the inner loop is an outer product.
// `accumulate` = 1 adds into C (the residual stream), saving an add kernel.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const TM: u32 = 4u;
const TN: u32 = 4u;
const WEIGHT_F16: bool = false;
const A_F16: bool = false;

const THREADS_N: u32 = TILE_N / TN;
const THREADS_M: u32 = TILE_M / TM;
const THREADS: u32 = THREADS_M * THREADS_N;
// Weights per vec4<u32> load: 4 f32 or 8 f16.
const W_PER_LOAD: u32 = select(4u, 8u, WEIGHT_F16);
const A_PER_LOAD: u32 = select(4u, 8u, A_F16);
const A_LOADS: u32 = TILE_M * TILE_K / A_PER_LOAD;
const W_LOADS: u32 = TILE_N * TILE_K / W_PER_LOAD;

//#include gemmParams

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4u>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> aTile: array<f32, TILE_K * TILE_M>;
var<workgroup> wTile: array<f32, TILE_K * TILE_N>;

// The values of one 16-byte word: 8 packed f16 (isF16) or 4 f32 (the rest unused).
fn unpackWord(u: vec4u, isF16: bool) -> array<f32, 8> {
  if (isF16) {
    let lo = vec4f(unpack2x16float(u.x), unpack2x16float(u.y));
    let hi = vec4f(unpack2x16float(u.z), unpack2x16float(u.w));
    return array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
  }
  let f = bitcast<vec4f>(u);
  return array<f32, 8>(f.x, f.y, f.z, f.w, 0.0, 0.0, 0.0, 0.0);
}

@compute @workgroup_size(THREADS)
fn gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let m0 = wg.y * TILE_M;
  let n0 = wg.x * TILE_N;
  let tx = tid % THREADS_N;
  let ty = tid / THREADS_N;
  let K = params.K;
  let ka = K / A_PER_LOAD;
  let kw = K / W_PER_LOAD;
  var acc: array<f32, TM * TN>;
  for (var k0 = 0u; k0 < K; k0 += TILE_K) {
    for (var e = tid; e < A_LOADS; e += THREADS) {
      let r = e / (TILE_K / A_PER_LOAD);
      let ca = e % (TILE_K / A_PER_LOAD);
      var u = vec4u(0u);
      if (m0 + r < params.M) { u = a[(m0 + r) * ka + k0 / A_PER_LOAD + ca]; }
      let kk = ca * A_PER_LOAD;
      let x = unpackWord(u, A_F16);
      for (var j = 0u; j < A_PER_LOAD; j++) { aTile[(kk + j) * TILE_M + r] = x[j]; }
    }
    for (var e = tid; e < W_LOADS; e += THREADS) {
      let r = e / (TILE_K / W_PER_LOAD);
      let cw = e % (TILE_K / W_PER_LOAD);
      var u = vec4u(0u);
      if (n0 + r < params.N) { u = w[(n0 + r) * kw + k0 / W_PER_LOAD + cw]; }
      let kk = cw * W_PER_LOAD;
      let x = unpackWord(u, WEIGHT_F16);
      for (var j = 0u; j < W_PER_LOAD; j++) { wTile[(kk + j) * TILE_N + r] = x[j]; }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      var av: array<f32, TM>;
      for (var i = 0u; i < TM; i++) { av[i] = aTile[kk * TILE_M + ty + i * THREADS_M]; }
      for (var j = 0u; j < TN; j++) {
        let bv = wTile[kk * TILE_N + tx + j * THREADS_N];
        for (var i = 0u; i < TM; i++) { acc[i * TN + j] = fma(av[i], bv, acc[i * TN + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + ty + i * THREADS_M;
    if (m >= params.M) { continue; }
    for (var j = 0u; j < TN; j++) {
      let n = n0 + tx + j * THREADS_N;
      if (n >= params.N) { continue; }
      let idx = m * params.N + n;
      if (params.accumulate != 0u) { c[idx] += acc[i * TN + j]; } else { c[idx] = acc[i * TN + j]; }
    }
  }
}
