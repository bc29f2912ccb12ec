"""Every suite shipped in suites/ parses, passes the registry checks and expands to jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.app import load_jobs

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))


def test_the_suites_folder_is_not_empty():
    assert {p.stem for p in SUITES} >= {"smoke", "zoo-2d", "zoo-digits", "images", "dequant",
                                        "tabular", "cnf", "digits-cond"}


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_file_expands(path):
    suite, jobs = load_jobs(str(path), quiet=True)
    assert suite.name == path.stem
    assert jobs and len({j.key for j in jobs}) == len(jobs)
