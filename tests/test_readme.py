"""Every key of the measurement vocabulary has its meaning beside it (``nfbench keys``), and
the README names the real commands."""

from __future__ import annotations

from pathlib import Path

from harness import keys

ROOT = Path(__file__).resolve().parents[1]


def test_every_key_has_its_meaning_beside_it_and_nfbench_keys_lists_it(capsys):
    """A key's documentation is the comment on its line in keys.py (adding a metric is its key
    and the code that measures it); ``nfbench keys`` prints them all, and the README sends
    readers there."""
    from harness.cli import main

    names = {v for k, v in vars(keys).items()
             if k.startswith(keys.KEY_GROUPS) and not k.endswith("_PREFIX")
             and isinstance(v, str)}  # fmt: skip
    documented = {value: meaning for value, meaning, _ in keys.vocabulary()}
    assert names == set(documented), names ^ set(documented)
    assert not [v for v, m in documented.items() if len(m) < 8], "keys without a meaning"
    assert main(["keys"]) == 0
    printed = capsys.readouterr().out
    assert all(f"  {v} " in printed for v in names)
    assert main(["keys", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert all(f"| `{v}` |" in table for v in names)
    assert "nfbench keys" in (ROOT / "README.md").read_text()


def test_readme_names_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/smoke.sh" in readme and "bash scripts/test.sh" in readme
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    assert "nfbench run suites/smoke.yaml" in (ROOT / "scripts" / "smoke.sh").read_text()
