#!/usr/bin/env bash
# The tests from a fresh clone: set up with the development extras, then run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
