// Next-token choice of the LLM runner, on the GPU so a decode step needs no readback:
// one workgroup per sequence takes argmax over the vocabulary of
//   logits / temperature + Gumbel noise   (temperature > 0: a sample from softmax(logits / T))
//   logits                                (temperature = 0: greedy)
// Ties go to the smaller token id. The choice is written to the next step's input
// tokens and to the history [step, batch] the host reads once at the end.
// The noise is a counter-based hash of (seed, step, sequence, token): reproducible.

const THREADS: u32 = 256u;

struct Params {
  vocab: u32,
  batch: u32,
  step: u32,
  seed: u32,
  temperature: f32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> nextTokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> history: array<u32>;

var<workgroup> bestVal: array<f32, THREADS>;
var<workgroup> bestIdx: array<u32, THREADS>;

//#include hash

@compute @workgroup_size(THREADS)
fn sampleTokens(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let b = wg.x;
  if (b >= params.batch) { return; }
  let base = b * params.vocab;
  let greedy = params.temperature <= 0.0;
  let stream = fmix(params.seed ^ fmix((params.step * 0x9e3779b9u) ^ fmix(b + 0x632be5abu)));
  var best = -3.0e38;
  var arg = 0xffffffffu;
  for (var j = tid; j < params.vocab; j += THREADS) {
    var v = logits[base + j];
    if (!greedy) {
      // Uniform in (0, 1): 24 random bits, offset by half a step so log never sees 0 or 1.
      let u = (f32(fmix(stream ^ fmix(j)) >> 8u) + 0.5) * (1.0 / 16777216.0);
      v = v / params.temperature - log(-log(u));
    }
    if (v > best) { best = v; arg = j; }
  }
  bestVal[tid] = best;
  bestIdx[tid] = arg;
  workgroupBarrier();
  for (var s = THREADS / 2u; s > 0u; s /= 2u) {
    if (tid < s) {
      let ov = bestVal[tid + s];
      let oi = bestIdx[tid + s];
      if (ov > bestVal[tid] || (ov == bestVal[tid] && oi < bestIdx[tid])) { bestVal[tid] = ov; bestIdx[tid] = oi; }
    }
    workgroupBarrier();
  }
  if (tid == 0u) {
    nextTokens[b] = bestIdx[0];
    history[params.step * params.batch + b] = bestIdx[0];
  }
}
