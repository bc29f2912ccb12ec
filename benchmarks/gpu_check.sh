#!/usr/bin/env bash
# The GPU path in one short script, for a machine with an NVIDIA GPU (never run by CI):
#  1. the smoke suite on CUDA in every runtime (runtime: [eager, compile, cuda-graphs], the
#     smoke suite's compile exclusion dropped: 12 jobs), packed four to a GPU
#     (resources.gpus: 0.25), then the timing phase on the whole GPU; checks that every run
#     finished on cuda, that each compiled run recorded its compile time with no graph break
#     and passed the check against eager, that the report has its compile panel, and that
#     MLflow's system metrics recorded the GPU (NVML) while the jobs trained;
#  2. the flow benchmarks on CUDA (nfbench against zuko / nflows / normflows, and ffjord), and
#     every architecture in each runtime (benchmarks/runtimes.py: eager, compile, cuda-graphs).
# Prints its figures; about 15 minutes on one GPU. Usage: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
bash scripts/setup.sh                          # CUDA torch where nvidia-smi answers
. .venv/bin/activate
python -m pip install --quiet -e ".[bench]"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA in this torch'; print(torch.__version__, torch.cuda.get_device_name(0))"

work=$(mktemp -d)
sed -e 's/^name: smoke/name: smoke-gpu/' -e 's/gpus: 0$/gpus: 0.25/' -e 's/cpus: 1$/cpus: 2/' \
    -e 's/^  runtime: \[eager, compile\]$/  runtime: [eager, compile, cuda-graphs]/' \
    -e '/^exclude:$/d' -e '/^  - {runtime: compile, dataset: digits}$/d' \
    suites/smoke.yaml > "$work/smoke-gpu.yaml"
grep -q "gpus: 0.25" "$work/smoke-gpu.yaml"
grep -q "runtime: \[eager, compile, cuda-graphs\]" "$work/smoke-gpu.yaml"
if grep -q "^exclude:" "$work/smoke-gpu.yaml"; then echo "the compile exclusion is still there" >&2; exit 1; fi
nfbench plan "$work/smoke-gpu.yaml" --no-preflight
( cd "$work" && time nfbench run smoke-gpu.yaml --out "$work/report" )
python - "$work" <<'PY'
import sys
from mlflow.tracking import MlflowClient
work = sys.argv[1]
client = MlflowClient(f"sqlite:///{work}/mlflow.db")
exp = client.get_experiment_by_name("smoke-gpu")
runs = client.search_runs([exp.experiment_id])
nan = float("nan")
for r in runs:
    t, m = r.data.tags, r.data.metrics
    print(f"{r.info.run_name:45s} {t['nfbench.status']:9s} {t.get('nfbench.runtime', 'eager'):12s} "
          f"{t['nfbench.device']:28s} timing on {t.get('nfbench.timing.device')}  "
          f"sample/s {m.get('perf/sample_throughput', nan):,.0f}  peak MB {m.get('perf/peak_mem_mb', nan):.0f}  "
          f"compile s {m.get('perf/compile_s', nan):.1f}  breaks {m.get('perf/graph_breaks', nan):.0f}  "
          f"recompiles {m.get('perf/recompiles', nan):.0f}  |Δ log p| {m.get('perf/eager_logprob_err', nan):.2g}")
assert len(runs) == 12 and all(r.data.tags["nfbench.device"].startswith("cuda") for r in runs)
assert all(r.data.tags["nfbench.status"] == "finished" for r in runs), "a run did not finish"
by_runtime = {}
for r in runs:
    by_runtime.setdefault(r.data.tags.get("nfbench.runtime", "eager"), []).append(r)
assert sorted(by_runtime) == ["compile", "cuda-graphs", "eager"], sorted(by_runtime)
for name in ("compile", "cuda-graphs"):
    for r in by_runtime[name]:
        m = r.data.metrics
        assert m["perf/compile_s"] > 0 and m["perf/graph_breaks"] == 0, (name, m)
        assert "perf/eager_logprob_err" in m and "perf/eager_inverse_err" in m
report = open(f"{work}/report/index.html", encoding="utf-8").read()
assert 'id="compile"' in report, "the report has no compile panel"
# MLflow's system metrics saw the GPU through NVML while the jobs trained
for r in runs:
    gpu = client.get_metric_history(r.info.run_id, "system/gpu_0_utilization_percentage")
    mem = client.get_metric_history(r.info.run_id, "system/gpu_0_memory_usage_megabytes")
    print(f"{r.info.run_name:45s} GPU utilisation {[round(m.value) for m in gpu]} %, "
          f"memory up to {max((m.value for m in mem), default=float('nan')):,.0f} MB")
    assert gpu and mem, "no GPU system metrics (is nvidia-ml-py installed?)"
PY
python benchmarks/flows_vs_peers.py --quick --device cuda --json "$work/flows_vs_peers.json"
python benchmarks/runtimes.py --device cuda --dims 8 32   # eager, compile, cuda-graphs per architecture
python benchmarks/harness_overhead.py
