"""Malformed suites are refused with exit status 2, a message naming the place, and no run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main

GOOD = textwrap.dedent("""\
    name: bad
    matrix:
      architectures: [realnvp]
      datasets: [moons]
      dequantization: [none]
      seeds: [0]
    train: {steps: 5}
    """)

# (id, suite text, fragments the message must contain)
CASES = [
    ("bad-yaml", "name: bad\nmatrix: [architectures: {\n", ["s.yaml:", "not valid YAML"]),
    ("unknown-arch", GOOD.replace("[realnvp]", "[realnpv]"),
     ["s.yaml:3: matrix.architectures[0]", "unknown architecture 'realnpv'",
      "did you mean 'realnvp'"]),
    ("unknown-dataset", GOOD.replace("[moons]", "[mons]"),
     ["s.yaml:4: matrix.datasets[0]", "unknown data set 'mons'", "did you mean 'moons'"]),
    ("unknown-dequant", GOOD.replace("[none]", "[unifrom]"),
     ["matrix.dequantization[0]", "did you mean 'uniform'"]),
    ("negative-budget", GOOD.replace("steps: 5", "steps: -5"),
     ["s.yaml:7: train.steps", "greater than 0", "-5"]),
    ("gpu-over-one", GOOD + "resources: {gpus: 1.5}\n",
     ["s.yaml:8: resources.gpus", "at most one GPU"]),
    ("empty-matrix", GOOD.replace("[realnvp]", "[]"),
     ["matrix.architectures", "at least 1 item"]),
    ("wrong-type", GOOD.replace("seeds: [0]", "seeds: [zero]"),
     ["s.yaml:6: matrix.seeds[0]", "valid integer", "'zero'"]),
    ("unknown-field", GOOD + "trian: {steps: 3}\n", ["s.yaml:8: trian", "unknown field"]),
    ("missing-name", GOOD.replace("name: bad\n", ""), ["name", "required field is missing"]),
    ("bad-hparam", GOOD.replace("[realnvp]", "[{name: realnvp, hiden: 8}]"),
     ["matrix.architectures[0].hiden", "no hyper-parameter 'hiden'", "did you mean 'hidden'"]),
    ("no-jobs-left", GOOD.replace("[none]", "[uniform]"),
     ["dropped", "expands to no job"]),
    ("not-a-mapping", "- just\n- a list\n", ["s.yaml:1", "a suite is a mapping"]),
    ("bad-lr", GOOD.replace("{steps: 5}", "{steps: 5, optimizer: {lr: 0}}"),
     ["s.yaml:7: train.optimizer.lr", "greater than 0"]),
    ("duplicate-key", GOOD + "train: {steps: 9}\n", ["s.yaml:8", "'train' is given twice"]),
    ("negative-seed", GOOD.replace("seeds: [0]", "seeds: [-1]"), ["matrix.seeds", "≥ 0"]),
    ("bad-rule", GOOD + "exclude:\n  - {arch: glw}\n", ["exclude[0].arch", "not in the matrix"]),
]


def _store_runs(db: Path) -> int:
    if not db.exists():
        return 0
    import sqlite3

    with sqlite3.connect(db) as con:
        try:
            return con.execute("select count(*) from runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_malformed_suite_exits_2_naming_the_place(case, tmp_path, capsys, monkeypatch):
    _, text, fragments = case
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(text)
    db = tmp_path / "mlflow.db"
    code = main(["run", "s.yaml", "--tracking-uri", f"sqlite:///{db}", "--no-report"])
    captured = capsys.readouterr()
    msg = captured.err + captured.out
    assert code == 2, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in:\n{msg}"
    assert _store_runs(db) == 0


def test_console_script_exit_status(tmp_path):
    (tmp_path / "s.yaml").write_text(GOOD.replace("[moons]", "[mons]"))
    exe = Path(sys.executable).with_name("nfbench")
    proc = subprocess.run([str(exe), "plan", "s.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "did you mean 'moons'" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_suite_file_suggests_suites_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "smoke.yaml").write_text(GOOD)
    assert main(["plan", "smoke"]) == 2
    assert "did you mean suites/smoke.yaml" in capsys.readouterr().err


def test_preflight_refuses_a_broken_plugin_before_any_run(tmp_path, capsys, monkeypatch):
    from harness import flows
    from harness.flows.base import Flow, Layer
    from harness.flows.zoo import REGISTRY

    class WrongLogDet(Layer):  # a plugin bug: the log-det has the wrong sign
        def forward(self, x, context=None, with_log_det=True):
            ld = None if not with_log_det else -x.new_full((x.shape[0],), x[0].numel() * 0.6931)
            return 2.0 * x, ld

        def inverse(self, y, context=None):
            return y / 2.0

    @flows.register("broken-plugin", "a broken test architecture")
    def factory(event_shape, context_dim):
        return Flow([WrongLogDet()], event_shape, context_dim)

    try:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "s.yaml").write_text(GOOD.replace("[realnvp]", "[realnvp, broken-plugin]"))
        db = tmp_path / "mlflow.db"
        assert main(["run", "s.yaml", "--tracking-uri", f"sqlite:///{db}"]) == 2
        err = capsys.readouterr().err
        assert "pre-flight: broken-plugin on moons" in err and "--no-preflight" in err
        assert "realnvp on" not in err  # the sound flow passes
        assert _store_runs(db) == 0
    finally:
        REGISTRY._entries.pop("broken-plugin", None)


def test_max_jobs_flag_raises_the_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seeds = ", ".join(map(str, range(10_001)))
    (tmp_path / "s.yaml").write_text(GOOD.replace("seeds: [0]", f"seeds: [{seeds}]"))
    assert main(["plan", "s.yaml", "--no-preflight"]) == 2
    assert "--max-jobs 10001" in capsys.readouterr().err
    assert main(["plan", "s.yaml", "--no-preflight", "--max-jobs", "10001"]) == 0
    out = capsys.readouterr().out
    assert "suite bad: 10001 jobs" in out and len(out.splitlines()) == 10_001 + 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_local_shape_is_this_machine():
    import os

    import torch

    from harness.schedule.resources import local_shape, train_slots

    shape = local_shape(None)
    assert shape.cpus == os.cpu_count() and shape.gpus == torch.cuda.device_count()
    assert local_shape(1.5).cpus == 1.5
    assert train_slots(local_shape(4), 1, 0, 10) == 4


def test_a_reader_that_leaves_early_ends_nfbench_quietly():
    """``nfbench keys | head -1``: the closed pipe ends the command with status 0 and no
    traceback. The reading end is closed before the command can print (its imports alone
    take longer), so every write meets the closed pipe."""
    import os

    exe = str(Path(sys.executable).with_name("nfbench"))
    read, write = os.pipe()
    proc = subprocess.Popen([exe, "keys"], stdout=write, stderr=subprocess.PIPE)
    os.close(write)
    os.close(read)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
