// The tensor-core GEMMs' epilogue: a 16 × 16 result matrix already stored at
// outTile[base …] (row-major, pitch 16) is written to C at (rowBase, colBase),
// each element bounds-checked so edge tiles need no padding, and added into C
// when params.accumulate is set. Needs, from the including kernel: `params`
// (gemmParams), `c`, `outTile` and SG_SIZE.
fn writeResultTile(base: u32, lane: u32, rowBase: u32, colBase: u32, M: u32, N: u32) {
  for (var i = 0u; i < 256u / SG_SIZE; i++) {
    let idx = i * SG_SIZE + lane;
    let m = rowBase + idx / 16u;
    let n = colBase + idx % 16u;
    if (m < M && n < N) {
      let v = outTile[base + idx];
      if (params.accumulate != 0u) { c[m * N + n] += v; } else { c[m * N + n] = v; }
    }
  }
}
