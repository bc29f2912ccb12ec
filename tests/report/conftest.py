"""A real MLflow store (SQLite in a temporary folder) holding suites in the writer's shape.

Suites (written once per test session, ~10 s):

* ``zoo``: seven architectures and two references × moons, 8gaussians, power (continuous),
  digits (uniform and variational dequantization) and mnist (one seed) — 79 runs, among
  them one failed (curves only as metric histories), one diverged, one killed;
* ``zoo-b``: part of zoo again, with realnvp 0.2 worse and maf 1.5× slower, and a failed glow;
* ``revs``: one suite written by two revisions of the code (the second: glow 0.3 worse);
* ``solo``: one data set, one seed;
* ``bare``: runs with nothing but tags and ``eval/nll`` (no timings, diagnostics, curves),
  one of them an infinite NLL;
* ``variants``: two variants of one data set (its options differ);
* ``compiled``: realnvp and maf on moons, two seeds, eager and ``runtime: compile``
  (compiled realnvp 2× faster than eager, compiled maf 1.25× slower, 20 s to compile);
* :data:`HOSTILE`: a suite whose name, labels, device and error carry HTML and scripts.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_synth import HOSTILE, HOSTILE_DEVICE, HOSTILE_LABEL, RunTruth, fill_suite

from harness import keys

CONTINUOUS = ["realnvp", "maf", "iaf", "glow", "nsf-coupling", "ffjord", "gaussian"]
ZOO_JOBS = (
    [(a, d, "none", [0, 1, 2]) for a in CONTINUOUS for d in ("moons", "8gaussians")]
    + [(a, "power", "none", [0, 1]) for a in ("realnvp", "maf", "glow", "nsf-coupling",
                                               "gaussian")]
    + [(a, "digits", q, [0, 1, 2]) for a in ("realnvp", "glow", "nsf-coupling")
       for q in ("uniform", "variational")]
    + [(a, "digits", "uniform", [0, 1, 2]) for a in ("gaussian", "histogram")]
    + [(a, "mnist", "uniform", [0]) for a in ("realnvp", "glow", "gaussian")]
)
ZOO_OUTCOMES = {
    ("glow", "power", "none", 1): keys.STATUS_FAILED,
    ("realnvp", "digits", "variational", 2): keys.STATUS_DIVERGED,
    ("maf", "moons", "none", 2): keys.STATUS_KILLED,
}
ZOO_B_JOBS = [(a, d, "none", [0, 1, 2]) for a in ("realnvp", "maf", "glow", "gaussian")
              for d in ("moons", "8gaussians")]


@dataclass
class Store:
    uri: str
    root: Path
    truths: dict[str, list[RunTruth]]

    def runs(self, suite: str) -> list[RunTruth]:
        return self.truths[suite]


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    art = root / "mlartifacts"
    truths = {
        "zoo": fill_suite(uri, "zoo", ZOO_JOBS, artifact_root=art, outcomes=ZOO_OUTCOMES,
                          points=21),
        "zoo-b": fill_suite(uri, "zoo-b", ZOO_B_JOBS, artifact_root=art,
                            quality_shift={"realnvp": 0.2}, speed_factor={"maf": 1.5}, points=11,
                            outcomes={("glow", "moons", "none", 0): keys.STATUS_FAILED}),
        "solo": fill_suite(uri, "solo", [("realnvp", "moons", "none", [0]),
                                         ("gaussian", "moons", "none", [0])],
                           artifact_root=art),
    }
    revs = [("realnvp", "moons", "none", [0, 1]), ("glow", "moons", "none", [0, 1])]
    truths["revs"] = (fill_suite(uri, "revs", revs, artifact_root=art, revision="aaa1111")
                      + fill_suite(uri, "revs", revs, artifact_root=art, revision="bbb2222",
                                   quality_shift={"glow": 0.3}))
    truths[HOSTILE] = fill_suite(
        uri, HOSTILE, [("realnvp", "moons", "none", [0, 1]), ("gaussian", "moons", "none", [0]),
                       ("glow", "digits", "uniform", [0])],
        artifact_root=art, arch_labels={"realnvp": HOSTILE_LABEL}, device=HOSTILE_DEVICE,
        outcomes={("glow", "digits", "uniform", 0): keys.STATUS_FAILED})
    truths["bare"] = _bare(uri)
    variants = [("realnvp", "digits", "uniform", [0])]
    truths["variants"] = [
        *fill_suite(uri, "variants", variants, artifact_root=art, points=5,
                    data_options={"flatten": "True"}),
        *fill_suite(uri, "variants", variants, artifact_root=art, points=5,
                    data_options={"flatten": "False", "n_bits": "5"}),
    ]
    pair = [("realnvp", "moons", "none", [0, 1]), ("maf", "moons", "none", [0, 1])]
    truths["compiled"] = [
        *fill_suite(uri, "compiled", pair, artifact_root=art, points=5),
        *fill_suite(uri, "compiled", pair, artifact_root=art, points=5, runtime="compile",
                    compile_s=COMPILE_S, speed_factor=COMPILED_SPEED),
    ]
    return Store(uri, root, truths)


COMPILE_S = 20.0  # the compiled suite's perf/compile_s
COMPILED_SPEED = {"realnvp": 0.5, "maf": 1.25}  # its compiled ms ÷ eager ms


def _bare(uri: str) -> list[RunTruth]:
    """Runs that logged tags and one metric only (an old writer, or a foreign tool)."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bare")
    out = []
    for arch, value in (("realnvp", 1.7), ("maf", 1.9), ("glow", float("inf"))):
        tags = {keys.TAG_SUITE: "bare", keys.TAG_ARCH: arch, keys.TAG_DATASET: "moons",
                keys.TAG_STATUS: keys.STATUS_FINISHED, keys.TAG_SEED: "0"}
        run = client.create_run(exp, tags=tags)
        client.log_metric(run.info.run_id, keys.EVAL_NLL, value)
        client.set_terminated(run.info.run_id)
        out.append(RunTruth(run.info.run_id, "bare", arch, arch, "moons", "none", 0,
                            keys.STATUS_FINISHED, tags, {}, {keys.EVAL_NLL: value},
                            pd.DataFrame(), curves_in_parquet=False))
    return out


@pytest.fixture(scope="session")
def zoo_site(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the zoo suite alone (index.html is the suite page)."""
    from harness.report import write_report

    out = tmp_path_factory.mktemp("site-zoo")
    return write_report(["zoo"], store.uri, out)


@pytest.fixture(scope="session")
def multi_site(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of several suites, the hostile one among them (index.html lists them)."""
    from harness.report import write_report

    out = tmp_path_factory.mktemp("site-multi")
    return write_report(["solo", HOSTILE, "bare"], store.uri, out,
                        ui_base="http://mlflow.example:5000/")


@pytest.fixture(scope="session")
def compiled_site(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the compiled suite (eager and compiled runs of the same jobs)."""
    from harness.report import write_report

    out = tmp_path_factory.mktemp("site-compiled")
    return write_report(["compiled"], store.uri, out)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable (Debian's package), or skip with the reason."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; CI installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return exe
