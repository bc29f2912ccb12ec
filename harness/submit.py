"""``nfbench submit``: send a suite to a Ray cluster as a Ray job (Ray's Jobs API).

The job's entry point is ``nfbench run SUITE --address auto`` on the head node, with this
checkout as its working directory (Ray uploads it), so the cluster runs exactly this code.
The cluster must expose the Jobs API (the dashboard, port 8265); cluster.yaml keeps it on the
head's loopback and the README shows the port-forwarding. Ray ≥ 2.5x uses token
authentication: the client sets ``RAY_AUTH_MODE=token`` and Ray reads the token itself.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

__all__ = ["entrypoint", "submit"]

EXCLUDES = [".git", ".venv", "mlflow.db", "mlartifacts", "mlruns", "reports", "__pycache__",
            "*.pyc", ".pytest_cache", "data"]


def entrypoint(suite_path: str, tracking_uri: str, force: bool) -> str:
    parts = ["nfbench", "run", suite_path, "--address", "auto", "--tracking-uri", tracking_uri]
    if force:
        parts.append("--force")
    return shlex.join(parts)


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
    uri = args.tracking_uri or "http://127.0.0.1:5000"
    client = JobSubmissionClient(args.address)
    job_id = client.submit_job(
        entrypoint=entrypoint(str(rel), uri, args.force),
        runtime_env={"working_dir": str(root), "excludes": EXCLUDES,
                     "env_vars": {"NFBENCH_REVISION": code_revision()}},
        metadata={"nfbench.suite": suite.name, "nfbench.jobs": str(len(jobs))},
    )
    print(f"submitted suite {suite.name} ({len(jobs)} jobs) as Ray job {job_id}")
    print(f"  follow:  ray job logs --address {args.address} --follow {job_id}")
    print(f"  status:  ray job status --address {args.address} {job_id}")
    print(f"  stop:    ray job stop --address {args.address} {job_id}")
    print(f"  runs:    MLflow at {uri} (experiment '{suite.name}')")
    if getattr(args, "wait", False):
        import asyncio

        async def follow() -> None:
            async for lines in client.tail_job_logs(job_id):
                print(lines, end="")

        asyncio.run(follow())
        status = client.get_job_status(job_id)
        print(f"Ray job {job_id}: {status}")
        return 0 if str(status).endswith("SUCCEEDED") else 1
    return 0
