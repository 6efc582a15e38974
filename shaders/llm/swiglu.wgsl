// SwiGLU of the LLM runner: h[t, i] = silu(gate[t, i]) · up[t, i], where the fused
// projection row is [gate (I) | up (I)]. One invocation per output element, 2-D grid.

// h is f32 words, or packed f16 pairs when OUT_F16 (one invocation per pair).

const THREADS: u32 = 256u;
const OUT_F16: bool = false;

struct Params {
  tokens: u32,
  inter: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> gateUp: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<u32>;

@compute @workgroup_size(THREADS)
fn swiglu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * THREADS;
  let per = select(1u, 2u, OUT_F16);
  if (idx * per >= params.tokens * params.inter) { return; }
  let e = idx * per;
  let t = e / params.inter;
  let i = e % params.inter;
  let row = t * 2u * params.inter;
  let g = gateUp[row + i];
  let u = gateUp[row + params.inter + i];
  let h0 = g / (1.0 + exp(-g)) * u;
  if (OUT_F16) {
    let g1 = gateUp[row + i + 1u];
    let u1 = gateUp[row + params.inter + i + 1u];
    h[idx] = pack2x16float(vec2f(h0, g1 / (1.0 + exp(-g1)) * u1));
  } else {
    h[idx] = bitcast<u32>(h0);
  }
}
