// Token embedding of the LLM runner: out[t, :] = E[token[t], :], one workgroup per
// token. E is stored as words like the linear weights (f32, or f16 packed two per word).

const THREADS: u32 = 128u;
const WEIGHT_F16: bool = false;

struct Params {
  tokens: u32,
  dim: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> tokenIds: array<u32>;
@group(0) @binding(2) var<storage, read> embTable: array<u32>;
@group(0) @binding(3) var<storage, read_write> embOut: array<f32>;

@compute @workgroup_size(THREADS)
fn embed(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let t = wg.x + wg.y * nwg.x;
  if (t >= params.tokens) { return; }
  let tok = tokenIds[t];
  let dst = t * params.dim;
  if (WEIGHT_F16) {
    let src = tok * params.dim / 2u;
    for (var i = tid; i < params.dim / 2u; i += THREADS) {
      let h = unpack2x16float(embTable[src + i]);
      embOut[dst + 2u * i] = h.x;
      embOut[dst + 2u * i + 1u] = h.y;
    }
  } else {
    let src = tok * params.dim;
    for (var i = tid; i < params.dim; i += THREADS) { embOut[dst + i] = bitcast<f32>(embTable[src + i]); }
  }
}
