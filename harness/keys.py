"""The measurement vocabulary: every MLflow key, tag and artifact name nfbench writes.

One source in code: the job writes these, the report reads them, and
``tests/test_codebase.py`` fails on a metric or tag name written out anywhere else in
``harness``. The comment on a name's line is its documentation: :func:`vocabulary` reads it,
``nfbench keys`` prints it, and a test fails on a key without one. Adding a metric is its line
here and the code that measures it. This module imports nothing heavy so that every layer may
use it.
"""

from __future__ import annotations

# ── tags on every run ────────────────────────────────────────────────────────────────
TAG_SUITE = "nfbench.suite"  # suite name
TAG_KEY = "nfbench.key"  # stable job key: hash of the normalised job config
TAG_ARCH = "nfbench.arch"  # architecture name (registry name)
TAG_ARCH_LABEL = "nfbench.arch_label"  # name plus non-default hyper-parameters, for tables
TAG_DATASET = "nfbench.dataset"  # data set name with its non-default options
TAG_DEQUANT = "nfbench.dequant"  # dequantization scheme with its options
TAG_SEED = "nfbench.seed"  # the job seed
TAG_RUNTIME = "nfbench.runtime"  # eager, compile, cuda-graphs (with options off the defaults)
TAG_STATUS = "nfbench.status"  # finished, diverged, failed, killed or running (STATUSES)
TAG_ERROR = "nfbench.error"  # last error (traceback tail) of a failed attempt
TAG_ATTEMPTS = "nfbench.attempts"  # workers that died under the job
TAG_DEVICE = "nfbench.device"  # e.g. "cpu (2 threads)" or "cuda:0 NVIDIA H200"
TAG_TORCH = "nfbench.torch"  # torch version of the worker
TAG_REVISION = "nfbench.revision"  # git revision of the code (+dirty)
TAG_HOST = "nfbench.host"  # host name of the worker
TAG_SLURM_NODE = "nfbench.slurm_node"  # Slurm node of the worker ($SLURMD_NODENAME), on Slurm
TAG_PHASE = "nfbench.phase"  # "trained" (timing left) or "timed"
TAG_RESUMED_STEP = "nfbench.resumed_step"  # the checkpoint step a retried job resumed from
TAG_LEDGER = "nfbench.ledger"  # on a suite's experiment: its claims ledger run
TAG_REFERENCE = "nfbench.reference"  # "true" on a reference row (registry metadata)
REFERENCE_YES = "true"

STATUS_FINISHED = "finished"  # trained, evaluated, timed, diagnosed
STATUS_DIVERGED = "diverged"  # training produced no finite model; diagnostics recorded
STATUS_FAILED = "failed"  # an exception or a dead worker, retries used up
STATUS_KILLED = "killed"  # stopped by the user (Ctrl-C) before it finished
STATUS_RUNNING = "running"
STATUSES = (STATUS_FINISHED, STATUS_DIVERGED, STATUS_FAILED, STATUS_KILLED, STATUS_RUNNING)
DONE_STATUSES = (STATUS_FINISHED, STATUS_DIVERGED)  # re-running a suite skips these

# ── evaluation on the test split (best-validation checkpoint) ────────────────────────
EVAL_NLL = "eval/nll"  # nats per example; continuous data: −log p(x); discrete: −bound
EVAL_NLL_SE = "eval/nll_se"  # its standard error over the test examples
EVAL_BPD = "eval/bpd"  # bits per dimension of the discrete data, every Jacobian included
EVAL_BPD_IW = "eval/bpd_iw"  # importance-weighted bound (variational dequantization)
EVAL_NLL_GAP = "eval/nll_gap"  # model NLL − true entropy where the density is known
EVAL_BEST_STEP = "eval/best_step"  # step of the checkpoint that was evaluated
EVAL_VAL_NLL = "eval/val_nll"  # validation NLL of the evaluated checkpoint
EVAL_VAL_BPD = "eval/val_bpd"  # validation bpd of the evaluated checkpoint

# ── performance (timing phase: no other job on the device) ──────────────────────────
PERF_SAMPLE_THROUGHPUT = "perf/sample_throughput"  # samples / s
PERF_DENSITY_MS = "perf/density_ms"  # log_prob of one batch
PERF_FORWARD_NOLOGDET_MS = "perf/forward_nologdet_ms"  # transform(x, with_log_det=False)
PERF_LOGDET_MS = "perf/logdet_ms"  # transform with log-det − transform without
PERF_LOGDET_SHARE = "perf/logdet_share"  # logdet_ms / forward-with-log-det ms
PERF_INVERSE_MS = "perf/inverse_ms"  # inverse of one batch (latent → data)
PERF_SAMPLE_MS = "perf/sample_ms"  # drawing one batch of samples
PERF_TRAIN_STEP_MS = "perf/train_step_ms"  # one optimizer step on one batch
PERF_PEAK_MEM_MB = "perf/peak_mem_mb"  # peak device memory (CUDA only)
PERF_BATCH = "perf/batch_size"  # rows per timed call
PERF_NFE = "perf/nfe"  # CNF: function evaluations of one test batch
PERF_PHASE_S = "perf/phase_s"  # seconds the timing phase took on its worker (compiling
#   included): the forecast's cost of timing the job
# compiled runtimes (not eager): what compiling cost, apart from the steady-state timings
PERF_COMPILE_S = "perf/compile_s"  # seconds to the first compiled call of every timed operation
PERF_RECOMPILES = "perf/recompiles"  # recompilations after each operation's first call
PERF_GRAPH_BREAKS = "perf/graph_breaks"  # graph breaks in the first calls (0: whole graphs)
PERF_EAGER_LOGPROB_ERR = "perf/eager_logprob_err"  # max |Δ log p| compiled − eager, timing batch
PERF_EAGER_INVERSE_ERR = "perf/eager_inverse_err"  # max |Δ inverse| compiled − eager
# the noise of the timings: each timed perf/*_ms metric K also records K_median, K_iqr and
# K_blocks (spread_keys); per run, what the machine did while it was timed
SUFFIX_MEDIAN = "_median"  # median of the block times (K itself is their first quartile)
SUFFIX_IQR = "_iqr"  # interquartile range of the block times
SUFFIX_BLOCKS = "_blocks"  # blocks the statistics are over (those that ran at speed)
PERF_CONTENDED = "perf/contended"  # 1: a kept timing ran while other processes were busy
#   or while the machine itself ran slow (perf/slowdown)
PERF_OTHERS_CPUS = "perf/others_cpus"  # CPUs other processes kept busy (worst measurement)
PERF_STEAL_SHARE = "perf/steal_share"  # share of CPU time stolen by a hypervisor (worst)
PERF_LOAD_AVG = "perf/load_avg"  # 1-minute load average around the timings (largest)
PERF_SLOWDOWN = "perf/slowdown"  # a canary kernel's time between blocks over its fastest
#   (the worst measurement's median; 1 = full speed)
PERF_RETIMED = "perf/retimed"  # measurements timed again (blocks disagreed or machine busy)
PERF_NOISY = "perf/noisy"  # kept measurements whose IQR is above 10 % of their median
TIMED_MS = (PERF_DENSITY_MS, PERF_FORWARD_NOLOGDET_MS, PERF_LOGDET_MS, PERF_INVERSE_MS,
            PERF_SAMPLE_MS, PERF_TRAIN_STEP_MS)
TAG_TIMING_CONTENDED = "nfbench.timing.contended"  # "yes" / "no"
TAG_TIMING_DEVICE = "nfbench.timing.device"  # the device the timings ran on
TAG_TIMING_THREADS = "nfbench.timing.threads"  # torch's CPU threads during the timings
TAG_TIMING_BATCH = "nfbench.timing.batch"  # rows per timed density/forward/inverse call
TAG_TIMING_SAMPLE_BATCH = "nfbench.timing.sample_batch"  # samples per timed sample call
TAG_TIMING_MIN_RUN_TIME = "nfbench.timing.min_run_time"  # seconds per measurement, at least
TAG_TIMING_METHOD = "nfbench.timing.method"  # how the times were measured, in words
TAG_TIMING_BLOCKS = "nfbench.timing.blocks"  # JSON {metric: [ms, …]}: the block times each
#   timed metric's statistics are over (those at speed), 4 digits; ratios are bootstrapped
#   from them (nfbench compare, the report's cost panels)
BLOCKED_MS = (PERF_DENSITY_MS, PERF_FORWARD_NOLOGDET_MS, PERF_INVERSE_MS, PERF_SAMPLE_MS,
              PERF_TRAIN_STEP_MS)  # the timings whose blocks the tag keeps (not the log-det:
#   a difference of two timings)


def spread_keys(key: str) -> tuple[str, str, str]:
    """The median, IQR and block-count keys recorded beside timed metric ``key``."""
    return key + SUFFIX_MEDIAN, key + SUFFIX_IQR, key + SUFFIX_BLOCKS


# ── stability diagnostics ────────────────────────────────────────────────────────────
STAB_INV_ERR_MAX = "stab/inv_err_max"  # max |inverse(transform(x)) − x| on test data
STAB_INV_ERR_MEAN = "stab/inv_err_mean"  # mean |inverse(transform(x)) − x|
STAB_LOGDET_MEAN = "stab/logdet_mean"  # log-det statistics on test inputs: mean
STAB_LOGDET_STD = "stab/logdet_std"  # … standard deviation
STAB_LOGDET_MIN = "stab/logdet_min"  # … minimum
STAB_LOGDET_MAX = "stab/logdet_max"  # … maximum
STAB_SATURATED_SHARE = "stab/saturated_share"  # share of bounded scales near their bound
STAB_NONFINITE_STEPS = "stab/nonfinite_steps"  # training steps skipped for a non-finite loss
STAB_GRAD_NORM_MAX = "stab/grad_norm_max"  # largest gradient norm before clipping
STAB_GRAD_NORM_MEAN = "stab/grad_norm_mean"  # mean gradient norm before clipping
STAB_LATENT_KS = "stab/latent_ks"  # mean over dims of the KS statistic of z vs N(0, 1)
STAB_LATENT_KURTOSIS = "stab/latent_kurtosis"  # mean excess kurtosis of z
STAB_COND_MAX = "stab/conv1x1_cond_max"  # Glow's invertible 1×1 conv condition number
STAB_NFE = "stab/nfe"  # CNF: function evaluations of the last transform's solves

# ── training curves (per step) ───────────────────────────────────────────────────────
TRAIN_LOSS = "train/loss"  # training loss (curve)
TRAIN_NLL = "train/nll"  # training NLL, continuous data (curve)
TRAIN_BPD = "train/bpd"  # training bpd, discrete data (curve)
TRAIN_GRAD_NORM = "train/grad_norm"  # gradient norm before clipping (curve)
TRAIN_LR = "train/lr"  # learning rate (curve)
TRAIN_WALL_S = "train/wall_s"  # training seconds so far, earlier attempts included
VAL_NLL = "val/nll"  # validation NLL every eval_every steps (curve)
VAL_BPD = "val/bpd"  # validation bpd every eval_every steps (curve)
TRAIN_NFE_FORWARD = "train/nfe_forward"  # CNF: function evaluations of the forward solve
TRAIN_NFE_BACKWARD = "train/nfe_backward"  # CNF: … of the backward (adjoint) solve
TRAIN_STEPS_DONE = "train/steps_done"  # training steps actually done
TRAIN_SECONDS = "train/seconds"  # seconds of training actually done
TRAIN_PHASE_S = "train/phase_s"  # seconds the train phase took on its worker (data, training,
#   evaluation, artifacts; this attempt): the forecast's cost of training the job

# ── the options every data set takes, read by the job (the rest go to its loader) ─────────
DATA_JOB_OPTIONS = ("flatten", "condition", "data_dir", "seed", "download")

# ── artifacts ────────────────────────────────────────────────────────────────────────
ART_CONFIG = "config.json"  # the normalised job config
ART_CHECKPOINT_LAST = "checkpoints/last.pt"  # state to resume: weights, optimizer, RNGs
ART_CHECKPOINT_BEST = "checkpoints/best.pt"  # weights at the best validation score
ART_CURVES = "curves.parquet"  # long table: step, wall_s, key, value
ART_DIAGNOSTICS = "diagnostics.json"  # why training stopped, best step, final metrics
ART_SAMPLES = "samples.png"  # density and samples (2-D), or a grid of samples (images)
ART_TIMING = "timing.json"  # every measurement: block times, estimator, attempts, machine load

# ── the trained flow as an MLflow LoggedModel (harness.job.export, harness.tracking.models) ──
ART_MODEL_WEIGHTS = "weights.pt"  # in a logged flow: its state dict (tensors; loaded weights-only)
ART_MODEL_SPEC = "flow.json"  # in a logged flow: what rebuilds it (architecture, shapes, config)
MODEL_LINKED = (EVAL_BPD, EVAL_NLL, PERF_SAMPLE_THROUGHPUT)  # metrics linked to the model
TAG_MODEL = "nfbench.model"  # on a run: the id of the LoggedModel of its best weights

# ── flow-layer diagnostics (harness.flows: Flow.stability() of the last transform) ────
STAB_LAYER_LOGDET_ABSMAX = "stab/layer_logdet_absmax"  # max over layers of |per-layer log-det|
STAB_SCALE_ABSMAX = "stab/scale_absmax"  # largest |log-scale| of a bounded affine scale
STAB_SPLINE_TAIL_SHARE = "stab/spline_tail_share"  # share of spline inputs in the linear tails
STAB_EXACT_TRACE = "stab/exact_trace"  # CNF: 1.0 when the last transform's trace was exact

# ── tuning (Ray Tune studies): a study is a parent run, each trial a child run ─────────────
TAG_KIND = "nfbench.kind"  # "study" or "trial" (a job's run has no kind tag)
KIND_STUDY = "study"
KIND_TRIAL = "trial"
TAG_STUDY = "nfbench.study"  # the study key: on the study, its trials and its tuned jobs
TAG_TRIAL = "nfbench.trial"  # Ray Tune's trial id
TAG_TRIAL_NUMBER = "nfbench.trial_number"  # 0, 1, … in the order Ray Tune created them
TAG_STOPPED_BY = "nfbench.stopped_by"  # why a trial or a job's training ended:
#   steps, asha, budget, minutes, diverged, error or patience (STOP_REASONS)
TAG_TUNED_TRIALS = "nfbench.tuned_trials"  # on a tuned job: the trials of its study
TAG_TUNE_VALUES = "nfbench.tune.values"  # on a trial: its sampled values (JSON)
TAG_TUNE_BEST = "nfbench.tune.best"  # on a study: the best trial's values (JSON)
TAG_TUNE_BEST_RUN = "nfbench.tune.best_run"  # on a study: the best trial's run id
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: the UI nests a trial under its study
STOP_STEPS = "steps"  # trained its whole budget
STOP_ASHA = "asha"  # stopped early by the ASHA scheduler at a rung
STOP_BUDGET = "budget"  # stopped when the study's compute budget ran out
STOP_MINUTES = "minutes"  # its wall-clock budget (train.minutes) ran out
STOP_DIVERGED = "diverged"  # too many non-finite steps
STOP_ERROR = "error"  # raised, or its worker died more often than retries allow
STOP_PATIENCE = "patience"  # early stopping: no new best validation within train.patience*
STOP_REASONS = (STOP_STEPS, STOP_ASHA, STOP_BUDGET, STOP_MINUTES, STOP_DIVERGED, STOP_ERROR,
                STOP_PATIENCE)

TUNE_OBJECTIVE = "tune/objective"  # validation score in the study's objective (curve)
TUNE_BEST = "tune/best"  # best objective: of a trial over its reports; of a study over trials
TUNE_STEPS = "tune/steps"  # training steps a trial did
TUNE_SECONDS = "tune/seconds"  # seconds a trial trained (validation included, all attempts)
TUNE_CPU_HOURS = "tune/cpu_hours"  # seconds × CPUs held / 3600 (a study: over its trials)
TUNE_GPU_HOURS = "tune/gpu_hours"  # seconds × GPU share held / 3600
TUNE_TRIALS = "tune/trials"  # a study: trials run

# ── a job while it runs (``nfbench status``), written by its worker ──────────────────
TAG_LIVE_PHASE = "nfbench.live.phase"  # "train" / "time": a worker runs it; "queued": none yet
LIVE_QUEUED = "queued"  # the run is open, waiting for a worker
LIVE_ENDED = "ended"  # the run is closed
TAG_LIVE_STARTED = "nfbench.live.started"  # UNIX time (s) that phase started on its worker
TAG_LIVE_STEP = "nfbench.live.step"  # training steps done at the last validation
TAG_JOBS = "nfbench.jobs"  # on a suite's experiment: the number of jobs of the suite
LIVE_TAG_PREFIX = "nfbench.live."  # the tags above that a worker updates while a job runs

# ── prefixes, system metrics and names that are not run tags ───────────────────────────
TAG_PREFIX = "nfbench."  # every nfbench tag starts so (the readers keep these tags)
TRAIN_PREFIX = "train/"  # training curves and training metrics
PERF_PREFIX = "perf/"  # timing-phase metrics
STAB_PREFIX = "stab/"  # numerical-stability metrics (a layer's own statistics included)
SYSTEM_PREFIX = "system/"  # system metrics (CPU, memory, GPU) sampled while a run is open
TAG_SYSTEM_METRICS_S = "nfbench.system_metrics_s"  # the system-metrics sampling interval (s)
LEDGER_EXPERIMENT = "nfbench.ledgers"  # the experiment holding the suites' claims ledgers


# ── the vocabulary with its meanings, read from the comments above ───────────────────
KEY_GROUPS = ("TAG_", "EVAL_", "PERF_", "STAB_", "TRAIN_", "VAL_", "TUNE_", "ART_")


def vocabulary() -> list[tuple[str, str, str]]:
    """Every key (a module-level string whose name starts with one of :data:`KEY_GROUPS`, and
    not a ``*_PREFIX``) as ``(value, meaning, section)``, in the order of this file: the meaning
    is the comment on its line (continued on the lines below that start ``#   ``), the section
    the last ``# ── title ──`` line above it.

    >>> entry = dict((v, m) for v, m, _ in vocabulary())["eval/bpd"]
    >>> entry.startswith("bits per dimension")
    True
    """
    import ast
    import io
    import tokenize
    from pathlib import Path

    source = Path(__file__).read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    continued: dict[int, str] = {}
    sections: list[tuple[int, str]] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        text = tok.string.lstrip("#").strip()
        if tok.start[1] == 0 and text.startswith("──"):
            sections.append((tok.start[0], text.strip("─ ")))
        elif tok.start[1] > 0:
            comments[tok.start[0]] = text
        elif tok.string.startswith("#   "):
            continued[tok.start[0]] = text
    out = []
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            continue
        name = node.targets[0].id
        if not name.startswith(KEY_GROUPS) or name.endswith("_PREFIX"):
            continue
        section = next((t for ln, t in reversed(sections) if ln < node.lineno), "")
        meaning, line = [comments.get(node.lineno, "")], node.lineno + 1
        while line in continued:
            meaning.append(continued[line])
            line += 1
        out.append((node.value.value, " ".join(m for m in meaning if m), section))
    return out
