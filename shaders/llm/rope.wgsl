// Rotary embeddings and K/V write of the LLM runner, one workgroup per token.
// Reads the fused projection row [q (Hq·D) | k (Hkv·D) | v (Hkv·D)], rotates q and k
// with the Llama "rotate half" pairing (d, d + D/2) at the token's position, writes
// q to the attention input (token-major, i.e. BSHD) and k, v into one buffer at the
// elements the host chose: K at `kvBase + head · kvHeadStride + d`, V `vOffset` further.
// The host decides the layout: the fast path's prefill staging rows ([seq][Hkv][tokens][D],
// what PagedKvCache.append takes), the token's slot in a page of the paged cache during
// decode ([K: Hkv][pageTokens][D] [V: …], so K and V of a page share the pool buffer),
// or the baseline's contiguous cache ([seq][capacity][Hkv][D], V after all of K).
// With `toPages` = 1 (a fast prefill whose pages are reserved) k and v are also
// stored in the token's page slot (`pageBase`, `pageHeadStride`, `pageVOffset`), so
// the prefill needs no append copies.
// Outputs are 32-bit words: f32 values, or f16 pairs (pack2x16float, core WGSL) when
// ACT_F16, so every invocation writes whole words (two adjacent elements).
// cos/sin come from a float64-computed table [position, D/2] so long positions stay exact.

const THREADS: u32 = 128u;
const ACT_F16: bool = false;

struct Params {
  tokens: u32,
  headsQ: u32,
  headsKV: u32,
  headDim: u32,
  kvHeadStride: u32,
  vOffset: u32,
  toPages: u32,
  pageHeadStride: u32,
  pageVOffset: u32,
}

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
// Per token: position, the element index of its K/V head 0, the same in its page (toPages), unused.
@group(0) @binding(2) var<storage, read> tokenMeta: array<vec4u>;
@group(0) @binding(3) var<storage, read> ropeTable: array<vec2f>;
@group(0) @binding(4) var<storage, read_write> qOut: array<u32>;
@group(0) @binding(5) var<storage, read_write> kvOut: array<u32>;
@group(0) @binding(6) var<storage, read_write> pageOut: array<u32>;

// Elements `at`, `at + 1` (at even) as f16 pair or two f32 words.
fn putQ(at: u32, a: f32, b: f32) {
  if (ACT_F16) { qOut[at / 2u] = pack2x16float(vec2f(a, b)); } else { qOut[at] = bitcast<u32>(a); qOut[at + 1u] = bitcast<u32>(b); }
}
fn putKv(at: u32, a: f32, b: f32) {
  if (ACT_F16) { kvOut[at / 2u] = pack2x16float(vec2f(a, b)); } else { kvOut[at] = bitcast<u32>(a); kvOut[at + 1u] = bitcast<u32>(b); }
}
fn putPage(at: u32, a: f32, b: f32) {
  if (ACT_F16) { pageOut[at / 2u] = pack2x16float(vec2f(a, b)); } else { pageOut[at] = bitcast<u32>(a); pageOut[at + 1u] = bitcast<u32>(b); }
}

@compute @workgroup_size(THREADS)
fn ropeScatter(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) tid: u32) {
  let t = wg.x + wg.y * nwg.x;
  if (t >= params.tokens) { return; }
  let D = params.headDim;
  let halfD = D / 2u;
  let quarterD = D / 4u;
  let hq = params.headsQ;
  let hkv = params.headsKV;
  let rowLen = (hq + 2u * hkv) * D;
  let row = t * rowLen;
  let pos = tokenMeta[t].x;
  let kvBase = tokenMeta[t].y;
  let pageBase = tokenMeta[t].z;
  let toPages = params.toPages != 0u;
  // Two adjacent rotated pairs per step (i, i + 1 with their partners i + D/2, i + 1 + D/2).
  let steps = (hq + hkv) * quarterD;
  for (var e = tid; e < steps; e += THREADS) {
    let head = e / quarterD;
    let i = 2u * (e % quarterD);
    let c0 = ropeTable[pos * halfD + i];
    let c1 = ropeTable[pos * halfD + i + 1u];
    let src = row + head * D + i;
    let x0a = qkv[src];
    let x0b = qkv[src + 1u];
    let x1a = qkv[src + halfD];
    let x1b = qkv[src + halfD + 1u];
    let y0a = x0a * c0.x - x1a * c0.y;
    let y0b = x0b * c1.x - x1b * c1.y;
    let y1a = x1a * c0.x + x0a * c0.y;
    let y1b = x1b * c1.x + x0b * c1.y;
    if (head < hq) {
      let dst = t * hq * D + head * D + i;
      putQ(dst, y0a, y0b);
      putQ(dst + halfD, y1a, y1b);
    } else {
      let dst = kvBase + (head - hq) * params.kvHeadStride + i;
      putKv(dst, y0a, y0b);
      putKv(dst + halfD, y1a, y1b);
      if (toPages) {
        let pd = pageBase + (head - hq) * params.pageHeadStride + i;
        putPage(pd, y0a, y0b);
        putPage(pd + halfD, y1a, y1b);
      }
    }
  }
  let vPairs = hkv * halfD;
  let vSrc = row + (hq + hkv) * D;
  for (var e = tid; e < vPairs; e += THREADS) {
    let head = e / halfD;
    let d = 2u * (e % halfD);
    let v0 = qkv[vSrc + head * D + d];
    let v1 = qkv[vSrc + head * D + d + 1u];
    putKv(kvBase + params.vOffset + head * params.kvHeadStride + d, v0, v1);
    if (toPages) { putPage(pageBase + params.pageVOffset + head * params.pageHeadStride + d, v0, v1); }
  }
}
