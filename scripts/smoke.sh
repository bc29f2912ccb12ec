#!/usr/bin/env bash
# The main job from a fresh clone: set up, run the smoke suite on a local Ray instance with an
# SQLite MLflow store in this directory (mlflow.db), and write reports/smoke/index.html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nfbench run suites/smoke.yaml "$@"
