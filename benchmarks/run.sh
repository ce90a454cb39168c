#!/usr/bin/env bash
# Reproduce benchmarks/results.md: installs the peers in their own venv, then runs bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --upgrade pip
  .venv-bench/bin/pip install --quiet -r benchmarks/requirements.txt
fi
.venv/bin/python benchmarks/bench.py "$@"
