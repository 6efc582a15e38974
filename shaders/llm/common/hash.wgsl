// murmur3's 32-bit finalizer: the hash behind the runner's random weights
// (init.wgsl) and its sampling streams (sampling.wgsl); src/llm/random.ts
// (fmix32) is the same arithmetic on the CPU.
fn fmix(x: u32) -> u32 {
  var h = x;
  h ^= h >> 16u;
  h *= 0x85ebca6bu;
  h ^= h >> 13u;
  h *= 0xc2b2ae35u;
  h ^= h >> 16u;
  return h;
}
