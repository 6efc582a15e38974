// SwiGLU of the LLM runner: h[t, i] = silu(gate[t, i]) · up[t, i], where the fused
// projection row is [gate (I) | up (I)]. One invocation per output element, 2-D grid.

const THREADS: u32 = 256u;

struct Params {
  tokens: u32,
  inter: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> gateUp: array<f32>;
@group(0) @binding(2) var<storage, read_write> h: array<f32>;

@compute @workgroup_size(THREADS)
fn swiglu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = gid.x + gid.y * nwg.x * THREADS;
  if (idx >= params.tokens * params.inter) { return; }
  let t = idx / params.inter;
  let i = idx % params.inter;
  let g = gateUp[t * 2u * params.inter + i];
  let u = gateUp[t * 2u * params.inter + params.inter + i];
  h[idx] = g / (1.0 + exp(-g)) * u;
}
