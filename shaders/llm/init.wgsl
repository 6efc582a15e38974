// Deterministic random weights on the GPU, for configs whose checkpoint is not at
// hand (LLaMA2-7B shapes are 13 GB: generating them on the device avoids the upload).
// randomValue(i) = (2·u(i) − 1)·scale + shift with u(i) = (fmix(i ^ fmix(seed)) >> 8) / 2²⁴,
// the same hash src/llm/random.ts evaluates on the CPU. Words are f32, or two f16 packed.

const THREADS: u32 = 256u;
const WEIGHT_F16: bool = false;

struct Params {
  // Words [base, base + words) of the buffer: one tensor of a fused weight.
  base: u32,
  words: u32,
  seed: u32,
  scale: f32,
  shift: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read_write> outWords: array<u32>;

//#include hash

fn randomValue(i: u32, key: u32) -> f32 {
  let u = f32(fmix(i ^ key) >> 8u) * (1.0 / 16777216.0);
  return (2.0 * u - 1.0) * params.scale + params.shift;
}

@compute @workgroup_size(THREADS)
fn initWeights(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * THREADS;
  if (i >= params.words) { return; }
  let key = fmix(params.seed);
  if (WEIGHT_F16) {
    outWords[params.base + i] = pack2x16float(vec2f(randomValue(2u * i, key), randomValue(2u * i + 1u, key)));
  } else {
    outWords[params.base + i] = bitcast<u32>(randomValue(i, key));
  }
}
