"""``nfbench submit``: send a suite to a Ray cluster as a Ray job (Ray's Jobs API).

The job's entry point is ``nfbench run SUITE --address auto`` on the head node, with this
checkout as its working directory (Ray uploads it), so the cluster runs exactly this code.
The cluster must expose the Jobs API (the dashboard, port 8265); cluster.yaml keeps it on the
head's loopback and ``docs/clusters.md`` shows the port-forwarding. Ray ≥ 2.5x uses token
authentication: the client sets ``RAY_AUTH_MODE=token`` and Ray reads the token itself.

Tracking URI: by default the entry point names none, so the job logs wherever the cluster's
nodes point ``$MLFLOW_TRACKING_URI`` (cluster.yaml: the head's MLflow server on its private
address, with its credentials in the nodes' environment). A URI given with ``--tracking-uri``
is passed on without credentials: a ``user:password@`` in it travels in the job's
``runtime_env`` as ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, and every
URI this command prints is masked.

``--follow`` (alias ``--wait``) streams the job's log until the suite ends, then prints the
job's status and where its report is (``nfbench run`` writes it on the head node).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from . import keys
from .tracking.uri import mask_uri, split_credentials

__all__ = ["entrypoint", "follow", "job_request", "report_location", "submit"]

EXCLUDES = [".git", ".venv", "mlflow.db", "mlartifacts", "mlruns", "reports", "__pycache__",
            "*.pyc", ".pytest_cache", "data"]
CLUSTER_DEFAULT = "the cluster's $MLFLOW_TRACKING_URI"
AGENT_PATIENCE_S = 120.0  # a new head's job agent takes a while to accept jobs


def entrypoint(suite_path: str, tracking_uri: str | None, force: bool,
               max_jobs: int | None = None) -> str:
    """The job's command line; ``tracking_uri`` must carry no credentials (None: the
    cluster's ``$MLFLOW_TRACKING_URI``); ``max_jobs`` travels when the user raised it."""
    parts = ["nfbench", "run", suite_path, "--address", "auto"]
    if tracking_uri:
        if split_credentials(tracking_uri)[1:] != (None, None):
            raise ValueError("a job's entry point must not carry credentials: pass the URI "
                             "through split_credentials() first")
        parts += ["--tracking-uri", tracking_uri]
    if force:
        parts.append("--force")
    if max_jobs is not None:
        parts += ["--max-jobs", str(int(max_jobs))]
    return shlex.join(parts)


def job_request(suite_rel: str, tracking_uri: str | None, force: bool, revision: str,
                working_dir: str, max_jobs: int | None = None) -> dict[str, Any]:
    """The ``entrypoint`` and ``runtime_env`` of the Ray job; credentials in
    ``tracking_uri`` go to ``runtime_env.env_vars``, never into the entry point."""
    env = {"NFBENCH_REVISION": revision}
    uri = None
    if tracking_uri:
        uri, user, password = split_credentials(tracking_uri)
        if user is not None:
            env["MLFLOW_TRACKING_USERNAME"] = user
        if password is not None:
            env["MLFLOW_TRACKING_PASSWORD"] = password
    return {
        "entrypoint": entrypoint(suite_rel, uri, force, max_jobs),
        "runtime_env": {"working_dir": working_dir, "excludes": EXCLUDES, "env_vars": env},
    }


def _submit_when_ready(client, request: dict[str, Any], metadata: dict[str, str],
                       patience_s: float = AGENT_PATIENCE_S) -> str:
    """``client.submit_job``, retried while the head's job agent is still starting (a head
    that has just come up answers "No available agent to submit job" for a while)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return client.submit_job(**request, metadata=metadata)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def submit(args, suite, jobs) -> int:
    from ray.job_submission import JobSubmissionClient

    from .job.environment import code_revision
    from .schedule.ray_backend import enable_token_auth

    enable_token_auth()
    root = Path.cwd()
    suite_path = Path(args.suite).resolve()
    try:
        rel = suite_path.relative_to(root)
    except ValueError:
        print(f"error: {args.suite}: the suite must lie under the working directory ({root}), "
              "which is uploaded as the job's working directory", file=sys.stderr)
        return 2
    request = job_request(str(rel), args.tracking_uri, args.force, code_revision(), str(root),
                          getattr(args, "max_jobs", None))
    shown = mask_uri(args.tracking_uri) if args.tracking_uri else CLUSTER_DEFAULT
    address = mask_uri(args.address)
    client = JobSubmissionClient(args.address)
    job_id = _submit_when_ready(client, request, metadata={
        keys.TAG_SUITE: suite.name, keys.TAG_JOBS: str(len(jobs))})
    print(f"submitted suite {suite.name} ({len(jobs)} jobs) as Ray job {job_id}")
    print(f"  follow:  ray job logs --address {address} --follow {job_id}")
    print(f"  status:  ray job status --address {address} {job_id}")
    print(f"  stop:    ray job stop --address {address} {job_id}")
    print(f"  runs:    MLflow at {shown} (experiment '{suite.name}')")
    if getattr(args, "follow", False):
        return follow(client, job_id, suite.name, shown)
    return 0


def report_location(log: str) -> str | None:
    """The report path that ``nfbench run`` printed in a job's log (its last ``report:``
    line), or None."""
    found = None
    for line in log.splitlines():
        if line.startswith("report: "):
            found = line.removeprefix("report: ").strip()
    return found


def follow(client, job_id: str, suite: str, tracking_shown: str) -> int:
    """Stream the Ray job's log until it ends; then its status and the report's location
    (on the head, where the job wrote it) and how to write the report here."""
    import asyncio

    seen: list[str] = []

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            seen.append(lines)
            print(lines, end="", flush=True)

    asyncio.run(tail())
    status = client.get_job_status(job_id)
    print(f"Ray job {job_id}: {status}")
    where = report_location("".join(seen))
    if where:
        print(f"report: {where} (on the cluster's head node, where the job ran)")
    print(f"  a copy here: nfbench report {shlex.quote(suite)} --tracking-uri URI "
          f"(the cluster's MLflow: {tracking_shown})")
    return 0 if str(status).endswith("SUCCEEDED") else 1
