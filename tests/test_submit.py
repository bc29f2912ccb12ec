"""Tracking URIs with credentials: masked when printed, never on a job's command line."""

from __future__ import annotations

import pytest

from harness.submit import entrypoint, job_request
from harness.tracking.uri import MASK, mask_uri, split_credentials


@pytest.mark.parametrize(("uri", "shown"), [
    ("http://alice:s3cret@10.0.0.5:5000", "http://alice:***@10.0.0.5:5000"),
    ("https://u:p%40ss@mlflow.example.org/base?x=1", "https://u:***@mlflow.example.org/base?x=***"),
    ("postgresql://db/mlflow?user=m&password=pw", "postgresql://db/mlflow?user=***&password=***"),
    ("http://u:p@ss@host:5000", "http://u:***@host:5000"),  # the last '@' ends the password
    ("http://token@host:5000", "http://***@host:5000"),
    ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    ("sqlite:////abs/dir/mlflow.db", "sqlite:////abs/dir/mlflow.db"),
    ("http://10.0.0.5:5000", "http://10.0.0.5:5000"),
    ("file:///tmp/mlruns", "file:///tmp/mlruns"),
    ("http://u:pw@[::1", MASK),  # not parsable: nothing of it is shown
])
def test_mask_uri(uri, shown):
    assert mask_uri(uri) == shown


def test_split_credentials():
    assert split_credentials("http://u:p%40ss@h:5000/x") == ("http://h:5000/x", "u", "p@ss")
    assert split_credentials("http://tok@h") == ("http://h", "tok", None)
    assert split_credentials("http://h:5000") == ("http://h:5000", None, None)


def test_a_job_gets_credentials_in_its_environment_not_its_command_line():
    req = job_request("suites/x.yaml", "http://nfbench:Pa55word-123@10.0.0.5:5000", False,
                      "abc123", "/work")
    assert req["entrypoint"] == ("nfbench run suites/x.yaml --address auto "
                                 "--tracking-uri http://10.0.0.5:5000")
    assert "Pa55word-123" not in req["entrypoint"]
    assert req["runtime_env"]["env_vars"] == {
        "NFBENCH_REVISION": "abc123", "MLFLOW_TRACKING_USERNAME": "nfbench",
        "MLFLOW_TRACKING_PASSWORD": "Pa55word-123"}
    # no URI given: the job logs wherever the cluster's nodes point $MLFLOW_TRACKING_URI
    req = job_request("suites/x.yaml", None, True, "abc123", "/work")
    assert req["entrypoint"] == "nfbench run suites/x.yaml --address auto --force"
    assert req["runtime_env"]["env_vars"] == {"NFBENCH_REVISION": "abc123"}
    with pytest.raises(ValueError, match="must not carry credentials"):
        entrypoint("suites/x.yaml", "http://u:p@h:5000", False)


def test_follow_is_the_documented_flag_and_wait_its_alias():
    from harness.cli_args import parser

    base = ["submit", "s.yaml", "--address", "http://127.0.0.1:8265"]
    assert parser().parse_args([*base, "--follow"]).follow is True
    assert parser().parse_args([*base, "--wait"]).follow is True
    assert parser().parse_args(base).follow is False


def test_the_report_location_is_the_last_report_line_of_the_log():
    from harness.submit import report_location

    log = ("suite s: 3 jobs → MLflow http://h:5000\nreport: /old/index.html\n"
           "  ✓ realnvp · moons\nreport: /home/ray/reports/s/index.html\n")
    assert report_location(log) == "/home/ray/reports/s/index.html"
    assert report_location("no report here\n  report: indented\n") is None
