// One link transfer of a collective between two logical devices that share one
// GPUDevice: dst[dstOffset ..] (+)= src[srcOffset ..] over `count` vec4s. The
// AllReduce of src/npu-emu/webgpuAllReduce.ts is a sequence of these (ring:
// reduce-scatter then all-gather of 1/N chunks; tree: reduce then broadcast),
// the receiving device doing the add, as an SDMA engine with a reduce unit would.

const THREADS: u32 = 256u;

struct Params {
  srcOffset: u32,
  dstOffset: u32,
  count: u32,
  accumulate: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4f>;

// 2-D grid: a block's partial output can exceed 65535 × 256 vec4s.
@compute @workgroup_size(THREADS)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * THREADS;
  if (i >= params.count) { return; }
  let x = src[params.srcOffset + i];
  if (params.accumulate != 0u) {
    dst[params.dstOffset + i] += x;
  } else {
    dst[params.dstOffset + i] = x;
  }
}
