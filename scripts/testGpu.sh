#!/usr/bin/env bash
# The GPU test suite: every kernel tier against the float64 CPU reference on this
# machine's GPU (CI's software adapter has no f16 and no subgroup matrices).
# On the GPU machine, with .gpu/ and dist/ carried (see ../shared/gpu/README.md):
#   source .gpu/setup.sh && bash scripts/testGpu.sh $OUT/gpu-tests.txt
# Exit status: non-zero if any case fails or a tier cannot run.
set -uo pipefail
out=${1:-bench/results/gpu-tests.txt}
cases=${CASES:-24}
fail=0
check() {
  echo "## fastattn check $*"
  node dist/cli.js check --cases "$cases" "$@" 2>>"$out.stderr" || fail=1
}
{
  node dist/cli.js info 2>>"$out.stderr" | grep -E '"(vendor|device|architecture|description|shaderF16|subgroups|subgroupMatrix)"|"tier"|"available"|"reason"'
  check --dtype f32 --tier f32
  check --dtype f16 --tier f16
  check --dtype f16 --tier subgroup-matrix
  echo "gpu test suite: $([ $fail = 0 ] && echo passed || echo FAILED)"
} >"$out"
cat "$out"
exit $fail
