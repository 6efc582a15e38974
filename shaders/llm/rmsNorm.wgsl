// RMSNorm of the LLM runner: y[r] = x[src(r)] / sqrt(mean(x²) + eps) · gamma,
// one workgroup per output row. src(r) = r · rowStep + rowOffset lets the last
// norm read only the last token of each sequence (rowStep = tokens per sequence).
// y is f32 words, or packed f16 pairs when OUT_F16 (the f16 path's GEMM inputs).

const THREADS: u32 = 256u;
const OUT_F16: bool = false;

struct Params {
  rows: u32,
  dim: u32,
  rowStep: u32,
  rowOffset: u32,
  eps: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<u32>;

var<workgroup> red: array<f32, THREADS>;

@compute @workgroup_size(THREADS)
fn rmsNorm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let r = wg.x;
  if (r >= params.rows) { return; }
  let src = (r * params.rowStep + params.rowOffset) * params.dim;
  var ss = 0.0;
  for (var i = tid; i < params.dim; i += THREADS) { let v = x[src + i]; ss = fma(v, v, ss); }
  red[tid] = ss;
  workgroupBarrier();
  for (var s = THREADS / 2u; s > 0u; s /= 2u) {
    if (tid < s) { red[tid] += red[tid + s]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(red[0] / f32(params.dim) + params.eps);
  let dst = r * params.dim;
  if (OUT_F16) {
    for (var j = tid; j < params.dim / 2u; j += THREADS) {
      let i = 2u * j;
      y[dst / 2u + j] = pack2x16float(vec2f(x[src + i] * inv * gamma[i], x[src + i + 1u] * inv * gamma[i + 1u]));
    }
  } else {
    for (var i = tid; i < params.dim; i += THREADS) { y[dst + i] = bitcast<u32>(x[src + i] * inv * gamma[i]); }
  }
}
