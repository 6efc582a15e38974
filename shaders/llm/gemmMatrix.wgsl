// Prefill matrix product of the LLM runner on tensor cores (subgroup matrices):
// C[M, N] (+)= A[M, K] · W[N, K]ᵀ, W f16 (packed pairs, the checkpoint's [out, in]
// order), A f32 or packed f16 (A_F16), both rounded to f16 in workgroup memory,
// products accumulated in f32 result matrices.
//
// A workgroup of SG_M × SG_N subgroups computes a BM × BN block of C; subgroup `sg`
// (from @builtin(subgroup_id), so every matrix offset below is subgroup-uniform)
// owns a 32 × 32 block: 2 × 2 result matrices of 16 × 16. K advances BK at a time:
// A and W tiles are staged row-major (K contiguous) through workgroup memory with
// 16-byte loads, rows padded by 8 halves so consecutive rows start in other banks;
// W rows are read as the right matrix in column-major order (Wᵀ without a transpose).
// Rows past M or N are staged as zeros (a matrix load past a storage buffer's end
// would be clamped as a whole). The epilogue goes through workgroup memory one
// result matrix at a time so edge tiles are bounds-checked per element and
// `accumulate` = 1 adds into C (the residual stream). K must be a multiple of BK.

const SG_M: u32 = 2u;
const SG_N: u32 = 4u;
const SG_SIZE: u32 = 32u;
const BK: u32 = 64u;
const A_F16: bool = false;

const SUBGROUPS: u32 = SG_M * SG_N;
const THREADS: u32 = SUBGROUPS * SG_SIZE;
const BM: u32 = 32u * SG_M;
const BN: u32 = 32u * SG_N;
const PITCH: u32 = BK + 8u;
const A_PER_LOAD: u32 = select(4u, 8u, A_F16);
const A_WORDS: u32 = BK / A_PER_LOAD;
const W_WORDS: u32 = BK / 8u;

//#include gemmParams

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4u>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> aTile: array<f16, BM * PITCH>;
var<workgroup> wTile: array<f16, BN * PITCH>;
var<workgroup> outTile: array<f32, SUBGROUPS * 256u>;

//#include resultTileOut

@compute @workgroup_size(THREADS)
fn gemmMatrix(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(local_invocation_index) tid: u32,
  @builtin(subgroup_id) sg: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let sm = (sg / SG_N) * 32u;
  let sn = (sg % SG_N) * 32u;
  let ka = K / A_PER_LOAD;
  let kw = K / 8u;
  var c00 = subgroup_matrix_result<f32, 16, 16>();
  var c01 = subgroup_matrix_result<f32, 16, 16>();
  var c10 = subgroup_matrix_result<f32, 16, 16>();
  var c11 = subgroup_matrix_result<f32, 16, 16>();
  for (var k0 = 0u; k0 < K; k0 += BK) {
    for (var e = tid; e < BM * A_WORDS; e += THREADS) {
      let r = e / A_WORDS;
      let cw = e % A_WORDS;
      var u = vec4u(0u);
      if (m0 + r < M) { u = a[(m0 + r) * ka + k0 / A_PER_LOAD + cw]; }
      let at = r * PITCH + cw * A_PER_LOAD;
      if (A_F16) {
        for (var j = 0u; j < 4u; j++) {
          let h = bitcast<vec2<f16>>(u[j]);
          aTile[at + 2u * j] = h.x;
          aTile[at + 2u * j + 1u] = h.y;
        }
      } else {
        let x = vec4<f16>(bitcast<vec4f>(u));
        aTile[at] = x.x;
        aTile[at + 1u] = x.y;
        aTile[at + 2u] = x.z;
        aTile[at + 3u] = x.w;
      }
    }
    for (var e = tid; e < BN * W_WORDS; e += THREADS) {
      let r = e / W_WORDS;
      let cw = e % W_WORDS;
      var u = vec4u(0u);
      if (n0 + r < N) { u = w[(n0 + r) * kw + k0 / 8u + cw]; }
      let at = r * PITCH + cw * 8u;
      for (var j = 0u; j < 4u; j++) {
        let h = bitcast<vec2<f16>>(u[j]);
        wTile[at + 2u * j] = h.x;
        wTile[at + 2u * j + 1u] = h.y;
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk += 16u) {
      let a0 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&aTile, sm * PITCH + kk, PITCH);
      let a1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&aTile, (sm + 16u) * PITCH + kk, PITCH);
      let b0 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&wTile, sn * PITCH + kk, PITCH);
      let b1 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&wTile, (sn + 16u) * PITCH + kk, PITCH);
      c00 = subgroupMatrixMultiplyAccumulate(a0, b0, c00);
      c01 = subgroupMatrixMultiplyAccumulate(a0, b1, c01);
      c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
      c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
    }
    workgroupBarrier();
  }
  for (var q = 0u; q < 4u; q++) {
    var t = c00;
    if (q == 1u) { t = c01; }
    if (q == 2u) { t = c10; }
    if (q == 3u) { t = c11; }
    subgroupMatrixStore<row_major>(&outTile, sg * 256u, t, 16u);
    workgroupBarrier();
    let rowBase = m0 + sm + (q / 2u) * 16u;
    let colBase = n0 + sn + (q % 2u) * 16u;
    writeResultTile(sg * 256u, lane, rowBase, colBase, M, N);
    workgroupBarrier();
  }
}
