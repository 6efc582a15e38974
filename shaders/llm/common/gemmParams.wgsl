// Parameters of the runner's three GEMM strategies (gemm.wgsl, gemmMatrix.wgsl,
// gemmMatrixDirect.wgsl): one params format, so the runner packs them alike.
// C[M, N] (+)= A[M, K] · W[N, K]ᵀ; accumulate = 1 adds into C.
struct Params {
  M: u32,
  N: u32,
  K: u32,
  accumulate: u32,
}
