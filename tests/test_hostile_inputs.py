"""A table of hostile suites and flags: each is refused before anything exists.

Every case runs ``harness.cli.main([...])`` in-process in an empty working directory holding
only its suite file, and must

- exit with status 2,
- print exactly one line on stderr, starting ``error:`` and naming the place (``FILE:LINE:
  field`` of the suite, or the flag), with no traceback,
- create nothing: no file or folder beside the suite (no ``mlflow.db``, no ``reports/``, no
  data folder), no Ray instance,
- and be refused in under 10 s, once the command's modules are imported (the slowest is
  checked by the last test).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch

from harness.cli import main

GOOD = """\
name: hostile
matrix:
  architectures: [realnvp]
  datasets: [moons]
  dequantization: [none]
  seeds: [0]
train: {steps: 5}
"""
#  line:    1: name, 2: matrix, 3: architectures, 4: datasets, 5: dequantization, 6: seeds,
#           7: train


def sub(old: str, new: str, text: str = GOOD) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def arch(item: str) -> str:
    return sub("[realnvp]", f"[{item}]")


def data(item: str, dequant: str = "none") -> str:
    return sub("[none]", f"[{dequant}]", sub("[moons]", f"[{item}]"))


def deq(item: str) -> str:
    return data("digits", item)


def train(extra: str) -> str:
    return sub("{steps: 5}", "{steps: 5, " + extra + "}")


BILLION_LAUGHS = "lol0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
) + GOOD
DEEP_LISTS = GOOD + "description: " + "[" * 3000 + "]" * 3000 + "\n"
DEEP_MAPS = GOOD + "x: " + "{a: " * 200 + "1" + "}" * 200 + "\n"
HUGE = GOOD + ("# " + "x" * 98 + "\n") * 3000  # 300 KB of comments
ANCHORS_200 = ("base: &b [" + ", ".join(["1"] * 200) + "]\nmore: &m [" + ", ".join(["*b"] * 60)
               + "]\n" + GOOD)
SEEDS_10001 = sub("seeds: [0]", "seeds: [" + ", ".join(map(str, range(10_001))) + "]")
LONG = "x" * 10_000
HAS_GPU = torch.cuda.device_count() > 0
MEMORY_GB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30

RUN = ["run", "s.yaml", "--no-report"]
PLAN = ["plan", "s.yaml"]

# (id, suite text (None: no file), command line, fragments the one error line must contain)
CASES: list[tuple[str, str | bytes | None, list[str], list[str]]] = [
    # ── the file and its YAML ────────────────────────────────────────────────────────────
    ("yaml-billion-laughs", BILLION_LAUGHS, RUN, ["s.yaml:5:", "aliases repeat more than"]),
    ("yaml-alias-expansion", ANCHORS_200, RUN, ["s.yaml:2:", "aliases repeat more than 10,000"]),
    ("yaml-recursive-alias", "a: &a [x, *a]\n" + GOOD, RUN, ["s.yaml:1:", "a cycle"]),
    ("yaml-recursive-map", "a: &a {b: {c: *a}}\n" + GOOD, RUN, ["s.yaml:1:", "a cycle"]),
    ("yaml-3000-nested-lists", DEEP_LISTS, RUN, ["s.yaml:8:", "nest"]),
    ("yaml-200-nested-maps", DEEP_MAPS, RUN, ["s.yaml:8:", "nested more than 32 levels"]),
    ("yaml-huge-file", HUGE, RUN, ["s.yaml", "bytes; a suite is at most 262,144"]),
    ("yaml-5000-digit-int", sub("{steps: 5}", "{steps: " + "9" * 5000 + "}"), RUN,
     ["s.yaml:7:", "an integer of 5,000 digits"]),
    ("yaml-not-utf8", GOOD.encode() + b"description: caf\xe9\n", RUN, ["s.yaml", "not UTF-8"]),
    ("yaml-nul-byte", GOOD + "description: a\x00b\n", RUN, ["s.yaml:8:15:", "#x0000"]),
    ("yaml-python-tag", GOOD + "description: !!python/object/apply:os.system [echo hi]\n", RUN,
     ["s.yaml:8:", "not valid YAML", "python/object/apply"]),
    ("yaml-unknown-tag", GOOD + "description: !shell ls\n", RUN, ["s.yaml:8:", "!shell"]),
    ("yaml-two-documents", GOOD + "---\nname: other\n", RUN, ["s.yaml:8:", "single document"]),
    ("yaml-undefined-alias", GOOD + "description: *nowhere\n", RUN,
     ["s.yaml:8:", "undefined alias"]),
    ("yaml-duplicate-anchor", "a: &x 1\nb: &x 2\n" + GOOD, RUN, ["s.yaml:2:", "duplicate anchor"]),
    ("yaml-syntax", "name: bad\nmatrix: [architectures: {\n", RUN,
     ["s.yaml:3:", "not valid YAML"]),
    ("yaml-empty", "", RUN, ["s.yaml: the file is empty"]),
    ("yaml-comment-only", "# nothing\n", RUN, ["s.yaml: the file is empty"]),
    ("yaml-top-level-list", "- a\n- b\n", RUN, ["s.yaml:1:", "a suite is a mapping"]),
    ("yaml-top-level-scalar", "42\n", RUN, ["s.yaml:1:", "not int"]),
    ("yaml-duplicate-key", GOOD + "train: {steps: 9}\n", RUN, ["s.yaml:8:", "given twice"]),
    ("yaml-complex-key", GOOD + "? [a, b]\n: 1\n", RUN, ["s.yaml:8:", "not valid YAML"]),
    ("suite-missing", None, RUN, ["s.yaml: no such suite file"]),
    ("suite-is-a-folder", None, ["run", ".", "--no-report"], [".: no such suite file"]),
    # ── types, booleans, non-finite and absurd numbers ───────────────────────────────────
    ("steps-yes", sub("{steps: 5}", "{steps: yes}"), RUN, ["s.yaml:7: train.steps", "boolean"]),
    ("seeds-true", sub("seeds: [0]", "seeds: [true]"), RUN,
     ["s.yaml:6: matrix.seeds", "boolean"]),
    ("steps-1e30", sub("{steps: 5}", "{steps: 1000000000000000000000000000000}"), RUN,
     ["s.yaml:7: train.steps", "less than or equal to 100000000"]),
    ("steps-negative", sub("{steps: 5}", "{steps: -5}"), RUN,
     ["s.yaml:7: train.steps", "greater than 0"]),
    ("steps-fraction", sub("{steps: 5}", "{steps: 1.5}"), RUN, ["s.yaml:7: train.steps"]),
    ("steps-text", sub("{steps: 5}", "{steps: ten}"), RUN,
     ["s.yaml:7: train.steps", "valid integer"]),
    ("no-budget", sub("{steps: 5}", "{steps: null}"), RUN, ["s.yaml:7: train", "minutes"]),
    ("batch-1e12", train("batch_size: 1000000000000"), RUN,
     ["s.yaml:7: train.batch_size", "less than or equal to 1048576"]),
    ("batch-zero", train("batch_size: 0"), RUN, ["s.yaml:7: train.batch_size"]),
    ("minutes-inf", train("minutes: .inf"), RUN, ["s.yaml:7: train.minutes", "finite"]),
    ("minutes-year", train("minutes: 525600"), RUN,
     ["s.yaml:7: train.minutes", "less than or equal to 10080"]),
    ("lr-nan", train("optimizer: {lr: .nan}"), RUN, ["s.yaml:7: train.optimizer.lr", "finite"]),
    ("lr-huge", train("optimizer: {lr: 1000}"), RUN, ["s.yaml:7: train.optimizer.lr"]),
    ("weight-decay-inf", train("optimizer: {weight_decay: .inf}"), RUN,
     ["s.yaml:7: train.optimizer.weight_decay", "finite"]),
    ("weight-decay-big", train("optimizer: {weight_decay: 5}"), RUN,
     ["s.yaml:7: train.optimizer.weight_decay", "less than or equal to 1"]),
    ("betas-out-of-range", train("optimizer: {betas: [0.9, 1.5]}"), RUN,
     ["train.optimizer.betas", "[0, 1)"]),
    ("betas-boolean", train("optimizer: {betas: [0.9, on]}"), RUN,
     ["train.optimizer.betas", "boolean"]),
    ("optimizer-unknown", train("optimizer: lbfgs"), RUN, ["train.optimizer.name"]),
    ("clip-inf", train("clip: .inf"), RUN, ["s.yaml:7: train.clip", "finite"]),
    ("log-every-yes", train("log_every: yes"), RUN, ["s.yaml:7: train.log_every", "boolean"]),
    ("warmup-1e12", train("schedule: {warmup_steps: 1000000000000}"), RUN,
     ["train.schedule.warmup_steps"]),
    ("iw-samples-1e9", GOOD + "eval: {iw_samples: 1000000000}\n", RUN,
     ["s.yaml:8: eval.iw_samples", "less than or equal to 65536"]),
    ("eval-batch-false", GOOD + "eval: {batch_size: false}\n", RUN,
     ["s.yaml:8: eval.batch_size", "boolean"]),
    ("timing-threads-zero", GOOD + "timing: {threads: 0}\n", RUN, ["s.yaml:8: timing.threads"]),
    ("timing-run-time-hour", GOOD + "timing: {min_run_time: 3600}\n", RUN,
     ["s.yaml:8: timing.min_run_time"]),
    ("memory-inf", GOOD + "resources: {memory_gb: .inf}\n", RUN,
     ["s.yaml:8: resources.memory_gb", "finite"]),
    ("memory-1e30", GOOD + "resources: {memory_gb: 1.0e+30}\n", RUN,
     ["s.yaml:8: resources.memory_gb", "less than or equal to 4096"]),
    ("cpus-1e9", GOOD + "resources: {cpus: 1000000000}\n", RUN,
     ["s.yaml:8: resources.cpus", "less than or equal to 1024"]),
    ("gpus-over-one", GOOD + "resources: {gpus: 1.5}\n", RUN,
     ["s.yaml:8: resources.gpus", "at most one GPU"]),
    ("gpus-negative", GOOD + "resources: {gpus: -1}\n", RUN, ["s.yaml:8: resources.gpus"]),
    ("retries-100", GOOD + "retries: 100\n", RUN, ["s.yaml:8: retries"]),
    # ── the runtime axis ─────────────────────────────────────────────────────────────────
    ("runtime-unknown", sub("seeds: [0]", "seeds: [0]\n  runtime: [eager, compiled]"), RUN,
     ["s.yaml:7: matrix.runtime[1]", "unknown runtime (got 'compiled')",
      "did you mean 'compile'"]),
    ("runtime-mode-unknown", sub("seeds: [0]",
                                 "seeds: [0]\n  runtime: [{name: compile, mode: fast}]"), RUN,
     ["s.yaml:7: matrix.runtime[0].mode", "unknown compile mode (got 'fast')", "max-autotune"]),
    ("runtime-shapes-unknown", sub("seeds: [0]",
                                   "seeds: [0]\n  runtime: [{name: compile, shapes: dyn}]"),
     RUN, ["s.yaml:7: matrix.runtime[0].shapes", "did you mean 'dynamic'"]),
    ("runtime-eager-with-shapes", sub("seeds: [0]",
                                      "seeds: [0]\n  runtime: [{name: eager, shapes: pad}]"),
     RUN, ["s.yaml:7: matrix.runtime[0]", "eager takes no shapes"]),
    ("runtime-option-unknown", sub("seeds: [0]",
                                   "seeds: [0]\n  runtime: [{name: compile, fullgraph: 1}]"),
     RUN, ["s.yaml:7: matrix.runtime[0].fullgraph", "unknown field"]),
    ("runtime-cuda-graphs-no-gpu", sub("seeds: [0]", "seeds: [0]\n  runtime: [cuda-graphs]"),
     RUN, ["s.yaml:7: matrix.runtime[0]", "GPU only", "resources: {gpus: 1}"]),
    ("rule-runtime-not-in-matrix", GOOD + "exclude: [{runtime: compile}]\n", RUN,
     ["s.yaml:8: exclude[0].runtime", "'compile' is not in the matrix"]),
    ("seed-negative", sub("seeds: [0]", "seeds: [-1]"), RUN, ["s.yaml:6: matrix.seeds", "≥ 0"]),
    ("seed-2-to-32", sub("seeds: [0]", "seeds: [4294967296]"), RUN,
     ["s.yaml:6: matrix.seeds", "4,294,967,295"]),
    ("seeds-repeated", sub("seeds: [0]", "seeds: [1, 1]"), RUN,
     ["s.yaml:6: matrix.seeds", "distinct"]),
    ("seeds-empty", sub("seeds: [0]", "seeds: []"), RUN, ["s.yaml:6: matrix.seeds"]),
    # ── names and fields ─────────────────────────────────────────────────────────────────
    ("name-10000-chars", sub("name: hostile", "name: " + LONG), RUN,
     ["s.yaml:1: name", "characters)"]),
    ("name-slash", sub("name: hostile", "name: ../etc"), RUN, ["s.yaml:1: name"]),
    ("name-missing", sub("name: hostile\n", ""), RUN, ["name: required field is missing"]),
    ("description-20000", GOOD + "description: " + "d" * 20_000 + "\n", RUN,
     ["s.yaml:8: description", "at most 10000 characters"]),
    ("label-10000-chars", arch("{name: realnvp, label: " + LONG + "}"), RUN,
     ["s.yaml:3: matrix.architectures[0].label", "at most 100 characters"]),
    ("field-unknown", GOOD + "trian: {steps: 3}\n", RUN, ["s.yaml:8: trian", "unknown field"]),
    ("field-unknown-nested", train("stepz: 3"), RUN, ["s.yaml:7: train.stepz", "unknown field"]),
    ("matrix-missing", "name: x\n", RUN, ["matrix: required field is missing"]),
    ("architectures-empty", arch(""), RUN, ["s.yaml:3: matrix.architectures", "at least 1"]),
    ("rule-empty", GOOD + "exclude: [{}]\n", RUN, ["s.yaml:8: exclude[0]", "at least one of"]),
    ("rule-unknown-arch", GOOD + "exclude:\n  - {arch: glw}\n", RUN,
     ["s.yaml:9: exclude[0].arch", "not in the matrix"]),
    ("rule-unknown-seed", GOOD + "include:\n  - {seed: 7}\n", RUN,
     ["s.yaml:9: include[0].seed", "not in matrix.seeds"]),
    ("arch-unknown", arch("realnpv"), RUN,
     ["s.yaml:3: matrix.architectures[0]", "did you mean 'realnvp'"]),
    ("arch-name-150", arch("a" * 150), RUN,
     ["s.yaml:3: matrix.architectures[0].name", "at most 100 characters"]),
    ("dataset-unknown", data("mons"), RUN,
     ["s.yaml:4: matrix.datasets[0]", "did you mean 'moons'"]),
    ("dequant-unknown", sub("[none]", "[unifrom]"), RUN,
     ["s.yaml:5: matrix.dequantization[0]", "did you mean 'uniform'"]),
    ("no-job-left", sub("[none]", "[uniform]"), RUN, ["s.yaml: matrix:", "expands to no job"]),
    # ── hyper-parameters, data and dequantization options ────────────────────────────────
    ("hparam-unknown", arch("{name: realnvp, hiden: 8}"), RUN,
     ["s.yaml:3: matrix.architectures[0].hiden", "did you mean 'hidden'"]),
    ("hparam-text", arch("{name: realnvp, hidden: big}"), RUN,
     ["s.yaml:3: matrix.architectures[0].hidden", "must be an int"]),
    ("hparam-huge", arch("{name: realnvp, hidden: 1000000000}"), RUN,
     ["s.yaml:3: matrix.architectures[0].hidden", "[1, 65,536]"]),
    ("hparam-boolean", arch("{name: maf, layers: yes}"), RUN,
     ["s.yaml:3: matrix.architectures[0].layers", "not a boolean"]),
    ("hparam-zero-layers", arch("{name: maf, layers: 0}"), RUN,
     ["matrix.architectures[0].layers", "[1, 1,000]"]),
    ("hparam-choice", arch("{name: realnvp, activation: relux}"), RUN,
     ["matrix.architectures[0].activation", "one of"]),
    ("hparam-inf", arch("{name: realnvp, scale_bound: .inf}"), RUN,
     ["matrix.architectures[0].scale_bound", "finite"]),
    ("hparam-cross", arch("{name: nsf-coupling, bins: 512, min_bin_width: 0.01}"), RUN,
     ["matrix.architectures[0].min_bin_width", "· bins must be < 1"]),
    ("hparam-without-preflight", arch("{name: realnvp, hidden: -3}"), RUN + ["--no-preflight"],
     ["s.yaml:3: matrix.architectures[0].hidden"]),
    ("hparam-reference-row", arch("{name: histogram, laplace: -1}"), RUN,
     ["matrix.architectures[0].laplace"]),
    ("preflight-levels", ("name: p\nmatrix:\n  architectures: [{name: glow, levels: 4}]\n"
                          "  datasets: [digits]\n  dequantization: [uniform]\n"
                          "train: {steps: 5}\n"), RUN,
     ["s.yaml:3: matrix.architectures[0]: pre-flight: glow", "levels", "--no-preflight"]),
    ("data-option-unknown", data("{name: moons, flaten: true}"), RUN,
     ["s.yaml:4: matrix.datasets[0].flaten", "did you mean 'flatten'"]),
    ("data-option-mlflow-key", data("{name: moons, 'x y!': 1}"), RUN,
     ["s.yaml:4: matrix.datasets[0].x y!", "no option"]),
    ("data-n-bits-zero", data("{name: mnist, n_bits: 0}", "uniform"), PLAN,
     ["s.yaml:4: matrix.datasets[0].n_bits", "[1, 8]"]),
    ("data-n-bits-text", data("{name: mnist, n_bits: '5'}", "uniform"), PLAN,
     ["matrix.datasets[0].n_bits", "must be an int"]),
    ("data-condition-no-labels", data("{name: moons, condition: label}"), PLAN,
     ["s.yaml:4: matrix.datasets[0].condition", "no class labels"]),
    ("data-condition-unknown", data("{name: digits, condition: labels}", "uniform"), PLAN,
     ["matrix.datasets[0].condition", "'label'"]),
    ("data-flatten-number", data("{name: digits, flatten: 3}", "uniform"), PLAN,
     ["matrix.datasets[0].flatten", "true or false"]),
    ("data-seed-negative", data("{name: moons, seed: -1}"), PLAN, ["matrix.datasets[0].seed"]),
    ("data-file-missing", data("{name: mnist}", "uniform"), RUN,
     ["s.yaml:4: matrix.datasets[0]", "download: true"]),
    ("dequant-option-unknown", deq("{name: uniform, logit: 0.05}"), PLAN,
     ["s.yaml:5: matrix.dequantization[0].logit", "did you mean 'logit_alpha'"]),
    ("dequant-alpha-range", deq("{name: uniform, logit_alpha: 0.7}"), PLAN,
     ["matrix.dequantization[0].logit_alpha", "(0, 0.5)"]),
    ("dequant-alpha-and-shift", deq("{name: uniform, logit_alpha: 0.05, shift: -0.5}"), PLAN,
     ["matrix.dequantization[0].shift", "not both"]),
    ("dequant-q-flow-unknown", deq("{name: variational, flow: realnpv}"), PLAN,
     ["matrix.dequantization[0].flow", "did you mean 'realnvp'"]),
    ("dequant-q-flow-hparam", deq("{name: variational, flow_options: {hiden: 8}}"), PLAN,
     ["matrix.dequantization[0].flow_options", "hiden"]),
    ("dequant-q-flow-range", deq("{name: variational, flow_options: {hidden: 0}}"), PLAN,
     ["matrix.dequantization[0].flow_options", "hidden: must be an int"]),
    # ── the job limit ────────────────────────────────────────────────────────────────────
    ("jobs-over-default-limit", SEEDS_10001, PLAN,
     ["s.yaml:3: matrix", "10,001 jobs", "--max-jobs 10001"]),
    ("jobs-over-flag-limit", sub("seeds: [0]", "seeds: [0, 1, 2, 3]"),
     ["plan", "s.yaml", "--max-jobs", "3"], ["s.yaml:3: matrix", "over the limit of 3"]),
    # ── flags ────────────────────────────────────────────────────────────────────────────
    ("num-cpus-negative", GOOD, RUN + ["--num-cpus", "-1"], ["--num-cpus", "> 0"]),
    ("num-cpus-zero", GOOD, RUN + ["--num-cpus", "0"], ["--num-cpus", "> 0"]),
    ("num-cpus-inf", GOOD, RUN + ["--num-cpus", "inf"], ["--num-cpus", "finite"]),
    ("num-cpus-nan", GOOD, RUN + ["--num-cpus", "nan"], ["--num-cpus", "finite"]),
    ("num-cpus-text", GOOD, RUN + ["--num-cpus", "many"], ["--num-cpus", "number"]),
    ("max-jobs-zero", GOOD, PLAN + ["--max-jobs", "0"], ["--max-jobs", "between 1 and"]),
    ("max-jobs-huge", GOOD, PLAN + ["--max-jobs", "1000000000000"], ["--max-jobs"]),
    ("max-jobs-text", GOOD, PLAN + ["--max-jobs", "lots"], ["--max-jobs", "whole number"]),
    ("flag-unknown", GOOD, RUN + ["--frobnicate"], ["unrecognized arguments: --frobnicate"]),
    ("command-unknown", GOOD, ["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ("suite-argument-missing", GOOD, ["run"], ["the following arguments are required: suite"]),
    ("data-dir-missing", GOOD, RUN + ["--data-dir", "no/such/dir"], ["--data-dir", "no such"]),
    ("address-garbage", GOOD, RUN + ["--address", "not an address"],
     ["--address", "not an address"]),
    ("submit-address-scheme", GOOD, ["submit", "s.yaml", "--address", "ftp://head:8265"],
     ["--address", "http://HOST:8265"]),
    ("compare-tolerance-negative", GOOD, ["compare", "a", "b", "--quality-tol", "-1"],
     ["--quality-tol", "≥ 0"]),
    ("compare-tolerance-nan", GOOD, ["compare", "a", "b", "--speed-tol", "nan"],
     ["--speed-tol", "finite"]),
    # ── tracking URIs ────────────────────────────────────────────────────────────────────
    ("uri-ftp", GOOD, RUN + ["--tracking-uri", "ftp://x"], ["--tracking-uri", "scheme 'ftp'"]),
    ("uri-bare-word", GOOD, RUN + ["--tracking-uri", "mlflow"],
     ["--tracking-uri", "not a tracking URI"]),
    ("uri-empty", GOOD, RUN + ["--tracking-uri", ""], ["--tracking-uri", "empty"]),
    ("uri-unreachable-server", GOOD, RUN + ["--tracking-uri", "http://127.0.0.1:1"],
     ["--tracking-uri", "cannot reach http://127.0.0.1:1"]),
    ("uri-credentials-unreachable", GOOD,
     RUN + ["--tracking-uri", "https://alice:s3cret@127.0.0.1:1"],
     ["--tracking-uri", "https://alice:***@127.0.0.1:1"]),
    ("uri-database-unreachable", GOOD,
     RUN + ["--tracking-uri", "postgresql+psycopg2://u:p@127.0.0.1:1/mlflow"],
     ["--tracking-uri", "cannot reach"]),
    ("uri-sqlite-missing-folder", GOOD,
     RUN + ["--tracking-uri", "sqlite:////nonexistent/dir/m.db"],
     ["--tracking-uri", "/nonexistent/dir", "does not exist"]),
    ("uri-sqlite-relative-missing-folder", GOOD, RUN + ["--tracking-uri", "sqlite:///a/b/m.db"],
     ["--tracking-uri", "does not exist"]),
    ("uri-sqlite-memory", GOOD, RUN + ["--tracking-uri", "sqlite:///:memory:"],
     ["--tracking-uri", "in-memory"]),
    ("uri-sqlite-two-slashes", GOOD, RUN + ["--tracking-uri", "sqlite://m.db"],
     ["--tracking-uri", "sqlite:///relative"]),
    ("uri-sqlite-folder", GOOD, RUN + ["--tracking-uri", "sqlite:///."],
     ["--tracking-uri", "is a folder"]),
    ("uri-sqlite-under-a-file", GOOD, RUN + ["--tracking-uri", "sqlite:///s.yaml/m.db"],
     ["--tracking-uri", "the folder s.yaml", "does not exist"]),
    ("uri-bad-port", GOOD, RUN + ["--tracking-uri", "http://localhost:99999"],
     ["--tracking-uri", "not a valid URI"]),
    ("uri-env-ftp", GOOD, RUN, ["$MLFLOW_TRACKING_URI", "scheme 'ftp'"]),
    ("report-no-store", None, ["report", "smoke"], ["no MLflow store at", "mlflow.db"]),
    ("compare-no-store", None, ["compare", "smoke", "smoke-new"], ["no MLflow store at"]),
    ("report-uri-ftp", None, ["report", "smoke", "--tracking-uri", "ftp://x"],
     ["--tracking-uri", "scheme 'ftp'"]),
    # ── resources against this machine (a local Ray instance) ────────────────────────────
    ("cpus-over-machine", GOOD + "resources: {cpus: 1000}\n", RUN,
     ["s.yaml:8: resources", "1000 CPUs"]),
    ("cpus-over-num-cpus", GOOD + "resources: {cpus: 1}\n", RUN + ["--num-cpus", "0.5"],
     ["s.yaml:8: resources", "asks for 1 CPUs"]),
    pytest.param("gpu-on-cpu-machine", GOOD + "resources: {gpus: 1}\n", RUN,
                 ["s.yaml:8: resources", "0 GPUs"],
                 marks=pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")),
    pytest.param("cuda-graphs-on-cpu-machine",
                 sub("seeds: [0]", "seeds: [0]\n  runtime: [eager, cuda-graphs]")
                 + "resources: {gpus: 1}\n", RUN, ["s.yaml:9: resources", "0 GPUs"],
                 marks=pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")),
    pytest.param("memory-over-machine", GOOD + "resources: {memory_gb: 4096}\n", RUN,
                 ["s.yaml:8: resources.memory_gb", "this machine has"],
                 marks=pytest.mark.skipif(MEMORY_GB >= 4096, reason="a 4 TB machine")),
]

DURATIONS: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _imported():
    """Import what the command imports once per process (torch, Ray, MLflow, the registries:
    about 5 s on a 2-core machine), so that each case times its own refusal."""
    import harness.schedule.resources
    import harness.tracking.read  # noqa: F401
    from harness.app import catalog

    catalog()


def _case_id(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("name", "text", "argv", "fragments"), CASES,
                         ids=[_case_id(c) for c in CASES])
def test_hostile_input_is_refused_before_anything_exists(name, text, argv, fragments, tmp_path,
                                                         capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NFBENCH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.nfbench/data: empty, never made
    if name == "uri-env-ftp":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "ftp://x")
    if isinstance(text, bytes):
        (tmp_path / "s.yaml").write_bytes(text)
    elif text is not None:
        (tmp_path / "s.yaml").write_text(text)
    before = _tree(tmp_path)

    t0 = time.perf_counter()
    code = main(list(argv))
    elapsed = time.perf_counter() - t0
    DURATIONS[name] = elapsed

    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-2000:]}"
    assert "Traceback" not in out + err
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err[-3000:]}"
    line = lines[0]
    assert line.startswith("error: ")
    assert len(line) <= 500, f"a {len(line)}-character line"
    for frag in fragments:
        assert frag in line, f"{frag!r} not in:\n{line}"
    if "s3cret" in " ".join(argv):
        assert "s3cret" not in out + err  # the password; the user name may show
    assert _tree(tmp_path) == before, "something was created"
    import ray

    assert not ray.is_initialized()
    assert elapsed < 10, f"{name}: refused after {elapsed:.1f} s"


def test_the_table_is_large_and_the_slowest_refusal_is_fast():
    """At least 80 hostile inputs; the slowest refusal among those that ran took < 10 s."""
    assert len(CASES) >= 80
    if len(DURATIONS) < 80:
        pytest.skip("run the whole table to time it")
    slowest = max(DURATIONS, key=DURATIONS.get)
    assert DURATIONS[slowest] < 10, f"slowest: {slowest} in {DURATIONS[slowest]:.2f} s"
    assert math.isfinite(DURATIONS[slowest])
    print(f"\n{len(DURATIONS)} refusals; slowest: {slowest} in {DURATIONS[slowest]:.2f} s")
