#!/usr/bin/env bash
# The documentation site: set up .venv if needed, build the site with `mkdocs build --strict` (any warning
# fails it) into ${1:-site}, then check that README.md's results block is what benchmarks/results gives
# (`python docs/tables.py --check README.md`). A README.md without the results markers skips that check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
site=${1:-site}
# Silence the notices about MkDocs' and Material's successors that the plugins print on every build.
export DISABLE_MKDOCS_2_WARNING=true NO_MKDOCS_2_WARNING=1
start=$SECONDS
python -m mkdocs build --strict --site-dir "$site"
echo "documentation site built in $((SECONDS - start)) s: $site"
if grep -q -- "<!-- results:start -->" README.md; then
  python docs/tables.py --check README.md
else
  echo "README.md has no <!-- results:start --> ... <!-- results:end --> block yet: its results check is skipped"
fi
