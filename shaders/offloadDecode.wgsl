// Kernels of the offload stand-in decoder (src/offload/decoder.ts):
//   project   y[r, n] = Σ_i x[r, i] · w[i, n]  (+ y[r, n] when residual = 1): Q/K/V and output projections
//   appendKv  copy `tokens` new K or V rows, laid out [batch, tokens, kvHeads, D] as a
//             projection writes them, into a cache [batch, kvHeads, capacity, D] at `pos`
// Attention itself is the library's fused operator (or the CPU, for offloaded layers).

const WG: u32 = 64u;

struct Params {
  rows: u32,
  inner: u32,
  cols: u32,
  residual: u32,
  batch: u32,
  tokens: u32,
  kvHeads: u32,
  headDim: u32,
  capacity: u32,
  pos: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> src: array<f32>;
@group(0) @binding(5) var<storage, read_write> cache: array<f32>;

// One invocation per output; consecutive invocations read consecutive columns of w.
@compute @workgroup_size(WG)
fn project(@builtin(global_invocation_id) gid: vec3u) {
  let col = gid.x;
  let row = gid.y + gid.z * 65535u;
  if (col >= params.cols || row >= params.rows) { return; }
  var acc = 0.0;
  let xr = row * params.inner;
  for (var i = 0u; i < params.inner; i++) { acc = fma(x[xr + i], w[i * params.cols + col], acc); }
  let o = row * params.cols + col;
  if (params.residual == 1u) { acc += y[o]; }
  y[o] = acc;
}

@compute @workgroup_size(WG)
fn appendKv(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  let D = params.headDim;
  let total = params.batch * params.tokens * params.kvHeads * D;
  if (i >= total) { return; }
  let d = i % D;
  let h = (i / D) % params.kvHeads;
  let t = (i / (D * params.kvHeads)) % params.tokens;
  let b = i / (D * params.kvHeads * params.tokens);
  cache[((b * params.kvHeads + h) * params.capacity + params.pos + t) * D + d] = src[i];
}
