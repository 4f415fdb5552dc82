#!/usr/bin/env bash
# The main job: set up .venv if needed, then run every registered pipeline on the embedded defaults.
# Extra arguments go to `kedro run` (for example: --pipelines knowledge_base, --env gpu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
kedro run "$@"
