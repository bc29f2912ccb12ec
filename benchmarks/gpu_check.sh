#!/usr/bin/env bash
# The GPU path in one short script, for a machine with an NVIDIA GPU (never run by CI):
#  1. the smoke suite on CUDA, four jobs packed on one GPU (resources.gpus: 0.25), then the
#     timing phase on the whole GPU; checks that every run says it ran on cuda and that
#     MLflow's system metrics recorded the GPU (NVML) while the jobs trained;
#  2. the flow benchmarks on CUDA (nfbench against zuko / nflows / normflows, and ffjord).
# Prints its figures; about 10 minutes on one GPU. Usage: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
bash scripts/setup.sh                          # CUDA torch where nvidia-smi answers
. .venv/bin/activate
python -m pip install --quiet -e ".[bench]"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA in this torch'; print(torch.__version__, torch.cuda.get_device_name(0))"

work=$(mktemp -d)
sed -e 's/^name: smoke/name: smoke-gpu/' -e 's/gpus: 0$/gpus: 0.25/' -e 's/cpus: 1$/cpus: 2/' \
    suites/smoke.yaml > "$work/smoke-gpu.yaml"
grep -q "gpus: 0.25" "$work/smoke-gpu.yaml"
( cd "$work" && time nfbench run smoke-gpu.yaml --out "$work/report" )
python - "$work" <<'PY'
import sys
from mlflow.tracking import MlflowClient
work = sys.argv[1]
client = MlflowClient(f"sqlite:///{work}/mlflow.db")
exp = client.get_experiment_by_name("smoke-gpu")
runs = client.search_runs([exp.experiment_id])
for r in runs:
    t, m = r.data.tags, r.data.metrics
    print(f"{r.info.run_name:45s} {t['nfbench.status']:9s} {t['nfbench.device']:28s} "
          f"timing on {t.get('nfbench.timing.device')}  sample/s {m.get('perf/sample_throughput', float('nan')):,.0f}"
          f"  peak MB {m.get('perf/peak_mem_mb', float('nan')):.0f}")
assert len(runs) == 4 and all(r.data.tags["nfbench.device"].startswith("cuda") for r in runs)
# MLflow's system metrics saw the GPU through NVML while the jobs trained
for r in runs:
    gpu = client.get_metric_history(r.info.run_id, "system/gpu_0_utilization_percentage")
    mem = client.get_metric_history(r.info.run_id, "system/gpu_0_memory_usage_megabytes")
    print(f"{r.info.run_name:45s} GPU utilisation {[round(m.value) for m in gpu]} %, "
          f"memory up to {max((m.value for m in mem), default=float('nan')):,.0f} MB")
    assert gpu and mem, "no GPU system metrics (is nvidia-ml-py installed?)"
PY
python benchmarks/flows_vs_peers.py --quick --device cuda --json "$work/flows_vs_peers.json"
python benchmarks/harness_overhead.py
