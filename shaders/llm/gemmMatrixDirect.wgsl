// Prefill matrix product of the LLM runner on tensor cores, operands read straight
// from storage: C[M, N] (+)= A[M, K] · W[N, K]ᵀ with A and W f16 (row-major, K
// contiguous), accumulated in f32 result matrices. The f16 path's GEMM inputs are
// already f16, so nothing needs converting and the K loop has no workgroup staging
// and no barriers: each subgroup streams its own matrices (neighbouring subgroups
// share rows through the caches).
//
// Subgroup `sg` (from @builtin(subgroup_id), so every matrix offset is
// subgroup-uniform) owns a 32 × 64 block of C: 2 × 4 result matrices.
// Contract with the host (matrix loads past a buffer's end are clamped whole):
// A's buffer holds at least ceil(M / BM) · BM rows (the runner pads its activation
// buffers), N is a multiple of 16 (W tiles past N are skipped whole), K a multiple
// of 16. The epilogue goes through workgroup memory one result matrix at a time so
// rows past M are never written and `accumulate` = 1 adds into C.

const SG_M: u32 = 2u;
const SG_N: u32 = 2u;
const SG_SIZE: u32 = 32u;

const SUBGROUPS: u32 = SG_M * SG_N;
const THREADS: u32 = SUBGROUPS * SG_SIZE;
const BM: u32 = 32u * SG_M;
const BN: u32 = 64u * SG_N;

//#include gemmParams

@group(0) @binding(0) var<storage, read> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> w: array<f16>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

var<workgroup> outTile: array<f32, SUBGROUPS * 256u>;

//#include resultTileOut

@compute @workgroup_size(THREADS)
fn gemmMatrixDirect(
  @builtin(workgroup_id) wg: vec3u,
  @builtin(subgroup_id) sg: u32,
  @builtin(subgroup_invocation_id) lane: u32,
) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let m0 = wg.y * BM + (sg / SG_N) * 32u;
  let n0 = wg.x * BN + (sg % SG_N) * 64u;
  // Which of the 4 column tiles exist (N is a multiple of 16); uniform per subgroup.
  let cols = min(4u, select(0u, (N - n0) / 16u, n0 < N));
  var c00 = subgroup_matrix_result<f32, 16, 16>();
  var c01 = subgroup_matrix_result<f32, 16, 16>();
  var c02 = subgroup_matrix_result<f32, 16, 16>();
  var c03 = subgroup_matrix_result<f32, 16, 16>();
  var c10 = subgroup_matrix_result<f32, 16, 16>();
  var c11 = subgroup_matrix_result<f32, 16, 16>();
  var c12 = subgroup_matrix_result<f32, 16, 16>();
  var c13 = subgroup_matrix_result<f32, 16, 16>();
  if (cols == 4u) {
    for (var k = 0u; k < K; k += 16u) {
      let a0 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, m0 * K + k, K);
      let a1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, (m0 + 16u) * K + k, K);
      let b0 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, n0 * K + k, K);
      let b1 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, (n0 + 16u) * K + k, K);
      let b2 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, (n0 + 32u) * K + k, K);
      let b3 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, (n0 + 48u) * K + k, K);
      c00 = subgroupMatrixMultiplyAccumulate(a0, b0, c00);
      c01 = subgroupMatrixMultiplyAccumulate(a0, b1, c01);
      c02 = subgroupMatrixMultiplyAccumulate(a0, b2, c02);
      c03 = subgroupMatrixMultiplyAccumulate(a0, b3, c03);
      c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
      c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
      c12 = subgroupMatrixMultiplyAccumulate(a1, b2, c12);
      c13 = subgroupMatrixMultiplyAccumulate(a1, b3, c13);
    }
  } else if (cols > 0u) {
    // The last column block of a matrix whose N is not a multiple of BN: one tile at a time.
    for (var k = 0u; k < K; k += 16u) {
      let a0 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, m0 * K + k, K);
      let a1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a, (m0 + 16u) * K + k, K);
      let b0 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, n0 * K + k, K);
      c00 = subgroupMatrixMultiplyAccumulate(a0, b0, c00);
      c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
      if (cols > 1u) {
        let b1 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, (n0 + 16u) * K + k, K);
        c01 = subgroupMatrixMultiplyAccumulate(a0, b1, c01);
        c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
      }
      if (cols > 2u) {
        let b2 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w, (n0 + 32u) * K + k, K);
        c02 = subgroupMatrixMultiplyAccumulate(a0, b2, c02);
        c12 = subgroupMatrixMultiplyAccumulate(a1, b2, c12);
      }
    }
  }
  for (var q = 0u; q < 8u; q++) {
    var t = c00;
    if (q == 1u) { t = c01; }
    if (q == 2u) { t = c02; }
    if (q == 3u) { t = c03; }
    if (q == 4u) { t = c10; }
    if (q == 5u) { t = c11; }
    if (q == 6u) { t = c12; }
    if (q == 7u) { t = c13; }
    subgroupMatrixStore<row_major>(&outTile, sg * 256u, t, 16u);
    workgroupBarrier();
    let rowBase = m0 + (q / 4u) * 16u;
    let colBase = n0 + (q % 4u) * 16u;
    writeResultTile(sg * 256u, lane, rowBase, colBase, M, N);
    workgroupBarrier();
  }
}
