#!/usr/bin/env bash
# Set up nfbench on a fresh machine: a virtual environment in .venv with the CPU build of
# PyTorch (installed first, so that the project's torch range pulls no CUDA build), nfbench
# itself (editable) and, with --dev, the test tools and Debian's chromium (browser tests),
# postgresql (MLflow on PostgreSQL) and slurm-wlm with munge (the Slurm tests).
# Idempotent: re-running installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install --quiet torch          # a CUDA build where there is a GPU
  else
    python -m pip install --quiet torch==2.13.0  # the CPU build
  fi
fi
if [ "${1:-}" = "--dev" ]; then
  python -m pip install --quiet -e ".[dev]"
  # Debian's chromium (browser tests of the reports), postgresql (MLflow on PostgreSQL: the
  # tests start a server of their own from its binaries), slurm-wlm and munge (the tests
  # start a two-node Slurm cluster of their own on this host)
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
    || missing+=(postgresql)
  { command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; } || missing+=(slurm-wlm)
  { command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; } || missing+=(munge)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        "${missing[@]}") >/dev/null \
        || echo "warning: could not install ${missing[*]}; their tests will skip" >&2
    else
      echo "note: install Debian's ${missing[*]} for the browser, PostgreSQL and Slurm" \
        "tests (they skip without)" >&2
    fi
  fi
else
  python -m pip install --quiet -e .
fi
