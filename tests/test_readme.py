"""The README documents every key of the measurement vocabulary and the real commands."""

from __future__ import annotations

from pathlib import Path

from harness import keys

ROOT = Path(__file__).resolve().parents[1]


def test_every_metric_key_and_tag_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = [v for k, v in vars(keys).items()
             if k.isupper() and isinstance(v, str) and k.startswith(
                 ("EVAL_", "PERF_", "STAB_", "TRAIN_", "VAL_", "TAG_", "ART_", "TUNE_"))]
    missing = [n for n in names if f"`{n}`" not in readme and n not in readme]
    assert not missing, f"undocumented keys: {missing}"


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/smoke.sh" in readme and "bash scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "nfbench run suites/smoke.yaml" in (ROOT / "scripts" / "smoke.sh").read_text()
