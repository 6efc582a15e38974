// Rotary embeddings and KV-cache write of the LLM runner, one workgroup per token.
// Reads the fused projection row [q (Hq·D) | k (Hkv·D) | v (Hkv·D)], rotates q and k
// with the Llama "rotate half" pairing (d, d + D/2) at the token's position, writes
// q to the attention input (token-major, i.e. BSHD) and k, v to the cache slot the
// host chose for the token (slot · Hkv·D). Slots make the cache layout the host's
// business: a contiguous cache uses b·capacity + position, a paged one its block table.
// cos/sin come from a float64-computed table [position, D/2] so long positions stay exact.

const THREADS: u32 = 128u;

struct Params {
  tokens: u32,
  headsQ: u32,
  headsKV: u32,
  headDim: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
// Per token: position, then slot.
@group(0) @binding(2) var<storage, read> tokenMeta: array<vec2u>;
@group(0) @binding(3) var<storage, read> ropeTable: array<vec2f>;
@group(0) @binding(4) var<storage, read_write> qOut: array<f32>;
@group(0) @binding(5) var<storage, read_write> kCache: array<f32>;
@group(0) @binding(6) var<storage, read_write> vCache: array<f32>;

@compute @workgroup_size(THREADS)
fn ropeScatter(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let t = wg.x + wg.y * nwg.x;
  if (t >= params.tokens) { return; }
  let D = params.headDim;
  let halfD = D / 2u;
  let hq = params.headsQ;
  let hkv = params.headsKV;
  let rowLen = (hq + 2u * hkv) * D;
  let row = t * rowLen;
  let pos = tokenMeta[t].x;
  let slot = tokenMeta[t].y;
  let kvBase = slot * hkv * D;
  // Rotated pairs of q and k heads.
  let pairs = (hq + hkv) * halfD;
  for (var e = tid; e < pairs; e += THREADS) {
    let head = e / halfD;
    let i = e % halfD;
    let cs = ropeTable[pos * halfD + i];
    let src = row + head * D + i;
    let x0 = qkv[src];
    let x1 = qkv[src + halfD];
    let y0 = x0 * cs.x - x1 * cs.y;
    let y1 = x1 * cs.x + x0 * cs.y;
    if (head < hq) {
      let dst = t * hq * D + head * D + i;
      qOut[dst] = y0;
      qOut[dst + halfD] = y1;
    } else {
      let dst = kvBase + (head - hq) * D + i;
      kCache[dst] = y0;
      kCache[dst + halfD] = y1;
    }
  }
  let vLen = hkv * D;
  for (var e = tid; e < vLen; e += THREADS) { vCache[kvBase + e] = qkv[row + (hq + hkv) * D + e]; }
}
