#!/usr/bin/env bash
# The GPU check on a machine without network: installs the wheels carried in build/gpu_wheels (if
# any, without dependencies or an index), then runs benchmarks/gpu_scale.py at full size.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G "build/gpu_wheels/*.whl" > /dev/null; then
    python -m pip install --quiet --no-deps --no-index build/gpu_wheels/*.whl
fi
out="${OUT:-data/08_reporting}"
mkdir -p "$out"
python benchmarks/gpu_scale.py --out "$out/gpu_scale.json" "$@" 2>&1 | tee "$out/gpu_scale.log"
