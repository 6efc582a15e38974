// Decode matrix product of the LLM runner: Y[M, N] (+)= X[M, K] · W[N, K]ᵀ for a
// few rows M (the decode batch, BATCH ≤ 16). Decode is bound by reading W once,
// so each workgroup streams ROWS_PER_WG weight rows with GROUP invocations per
// row, each invocation reading 16-byte words (4 f32 or 8 packed f16) strided by
// GROUP so a row is read in coalesced sweeps, and applies every word to all
// BATCH activation rows (X is small and stays in cache). X is f32, or packed f16
// pairs when X_F16 (the attention output of the f16 path; only with f16 weights). Partial sums meet in
// workgroup memory. `accumulate` = 1 adds into Y (the residual stream).

const BATCH: u32 = 1u;
const GROUP: u32 = 64u;
const ROWS_PER_WG: u32 = 4u;
const WEIGHT_F16: bool = false;
const X_F16: bool = false;

const THREADS: u32 = GROUP * ROWS_PER_WG;
const W_PER_LOAD: u32 = select(4u, 8u, WEIGHT_F16);

struct Params {
  N: u32,
  K: u32,
  accumulate: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4u>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> partials: array<f32, BATCH * THREADS>;

@compute @workgroup_size(THREADS)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let lane = tid % GROUP;
  let slot = tid / GROUP;
  let n = (wg.x + wg.y * nwg.x) * ROWS_PER_WG + slot;
  let K = params.K;
  let k4 = K / 4u;
  let kw = K / W_PER_LOAD;
  var acc: array<f32, BATCH>;
  if (n < params.N) {
    let base = n * kw;
    for (var i = lane; i < kw; i += GROUP) {
      let u = w[base + i];
      if (WEIGHT_F16) {
        let w0 = vec4f(unpack2x16float(u.x), unpack2x16float(u.y));
        let w1 = vec4f(unpack2x16float(u.z), unpack2x16float(u.w));
        if (X_F16) {
          // One word of X holds the same 8 elements as the weight word.
          for (var m = 0u; m < BATCH; m++) {
            let xu = x[m * kw + i];
            acc[m] += dot(w0, vec4f(unpack2x16float(xu.x), unpack2x16float(xu.y))) + dot(w1, vec4f(unpack2x16float(xu.z), unpack2x16float(xu.w)));
          }
        } else {
          for (var m = 0u; m < BATCH; m++) {
            acc[m] += dot(w0, bitcast<vec4f>(x[m * k4 + 2u * i])) + dot(w1, bitcast<vec4f>(x[m * k4 + 2u * i + 1u]));
          }
        }
      } else {
        let w0 = bitcast<vec4f>(u);
        for (var m = 0u; m < BATCH; m++) { acc[m] += dot(w0, bitcast<vec4f>(x[m * k4 + i])); }
      }
    }
  }
  for (var m = 0u; m < BATCH; m++) { partials[m * THREADS + tid] = acc[m]; }
  workgroupBarrier();
  for (var s = GROUP / 2u; s > 0u; s /= 2u) {
    if (lane < s) {
      for (var m = 0u; m < BATCH; m++) { partials[m * THREADS + tid] += partials[m * THREADS + tid + s]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < params.N) {
    for (var m = 0u; m < BATCH; m++) {
      let idx = m * params.N + n;
      let v = partials[m * THREADS + tid];
      if (params.accumulate != 0u) { y[idx] += v; } else { y[idx] = v; }
    }
  }
}
