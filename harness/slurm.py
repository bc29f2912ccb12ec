"""The Python half of ``scripts/slurm/nfbench.sbatch``: a suite across a Slurm allocation.

The sbatch script starts the processes; this module decides what they are, from the job's
``SLURM_*`` variables, and refuses bad input before anything starts. Its subcommands
(``python -m harness.slurm SUBCOMMAND``):

- ``check SUITE [RUN FLAGS]``: the suite and ``nfbench run``'s flags are checked as ``nfbench
  run`` checks them; the script sets ``--address`` and ``--num-cpus`` itself, so they are
  refused here. One job's ``resources`` must fit one node's share of the allocation. A
  tracking URI the user names (``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``) must be
  one every node reaches: a server or a database (probed from here), not a file (SQLite, a
  file store) when the allocation has more than one node. Prints that URI, or an empty line
  when the script is to start an MLflow server on the head node.
- ``ray head|worker``: replaces itself with ``ray start … --block`` for this node, its
  resources from the allocation: ``--cpus-per-task`` (``$SLURM_CPUS_PER_TASK``, else the
  node's ``$SLURM_CPUS_ON_NODE``) becomes ``--num-cpus``, ``--gpus-per-node``
  (``$SLURM_GPUS_PER_NODE``, e.g. ``2`` or ``a100:2``) ``--num-gpus``. Every port Ray opens
  on a node is a free one of that node (a shared node may hold another user's Ray), and no
  dashboard is started.
- ``head-ip``, ``free-port``, ``token``: the head's address (``$NFBENCH_HEAD_IP``, else the one
  Ray would pick), a free TCP port there, a new token for Ray's token authentication.
- ``wait-nodes ADDRESS N SECONDS`` and ``wait-http URL SECONDS``: until N Ray nodes are
  alive, or until a server answers; exit status 1 with the reason when time runs out.

Bad input: exit status 2 and one line, ``error: …``, naming the flag or file and the fix.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .refusals import UsageError

__all__ = ["Allocation", "allocation", "check_run", "main", "ray_start_args"]

EXIT_BAD_INPUT = 2
SCRIPT = "scripts/slurm/nfbench.sbatch"
SET_BY_SCRIPT = ("--address", "--num-cpus")  # nfbench run flags the script sets itself
FILE_SCHEMES = ("sqlite", "file")


@dataclass(frozen=True)
class Allocation:
    """One node's share of a Slurm allocation, and the number of nodes."""

    nodes: int
    cpus: int
    gpus: int


def _count(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"${name}: '{value[:40]}' is not a whole number") from None
    if n < 0:
        raise UsageError(f"${name}: {n} is negative")
    return n


def _gpus(spec: str) -> int:
    """``$SLURM_GPUS_PER_NODE`` as a count: ``2``, ``a100:2``, ``gpu:a100:2``, or a list of
    such (``a100:1,v100:1``), whose counts add up."""
    total = 0
    for part in spec.split(","):
        last = part.strip().rsplit(":", 1)[-1]
        total += _count(last, "SLURM_GPUS_PER_NODE") if last.isdigit() else 1
    return total


def allocation(env: Mapping[str, str] | None = None) -> Allocation:
    """This node's CPUs and GPUs and the job's node count, from Slurm's variables."""
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" not in env:
        raise UsageError(f"no Slurm job here ($SLURM_JOB_ID is unset): submit {SCRIPT} with "
                         "sbatch, or run a suite outside Slurm with nfbench run")
    nodes = _count(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or "1",
                   "SLURM_JOB_NUM_NODES")
    if env.get("SLURM_CPUS_PER_TASK"):
        cpus = _count(env["SLURM_CPUS_PER_TASK"], "SLURM_CPUS_PER_TASK")
    elif env.get("SLURM_CPUS_ON_NODE"):
        cpus = _count(env["SLURM_CPUS_ON_NODE"], "SLURM_CPUS_ON_NODE")
    else:
        cpus = os.cpu_count() or 1
    gpus = _gpus(env["SLURM_GPUS_PER_NODE"]) if env.get("SLURM_GPUS_PER_NODE") else 0
    return Allocation(nodes=max(nodes, 1), cpus=cpus, gpus=gpus)


def _free_port(host: str = "") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ray_start_args(role: str, alloc: Allocation, *, node_ip: str | None = None,
                   port: int | None = None, address: str | None = None,
                   free_port=_free_port) -> list[str]:
    """The arguments of ``ray start`` on this node (``role``: head or worker)."""
    args = ["start", "--block", f"--num-cpus={alloc.cpus}", f"--num-gpus={alloc.gpus}",
            "--disable-usage-stats"]
    if node_ip:
        args.append(f"--node-ip-address={node_ip}")
    if role == "head":
        if port is None:
            raise ValueError("the head needs its port")
        args += ["--head", f"--port={port}", "--include-dashboard=false",
                 f"--ray-client-server-port={free_port()}"]
    elif role == "worker":
        if not address:
            raise ValueError("a worker needs the head's address")
        args.append(f"--address={address}")
    else:
        raise ValueError(f"role {role!r}: head or worker")
    for flag in ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                 "--runtime-env-agent-port"):
        args.append(f"{flag}={free_port()}")
    return args


def check_run(suite: str, flags: list[str], alloc: Allocation,
              env: Mapping[str, str] | None = None) -> str | None:
    """Check the suite and ``nfbench run``'s flags for a run across ``alloc``; the tracking
    URI the user named (None: the script starts a server). Raises the errors ``nfbench``
    prints (UsageError, SuiteError, TrackingUriError)."""
    from .app import load_jobs
    from .cli_args import parser
    from .tracking.uri import check_tracking_uri

    env = os.environ if env is None else env
    for flag in flags:
        name = flag.split("=", 1)[0]
        if name in SET_BY_SCRIPT:
            raise UsageError(f"{name}: {SCRIPT} sets it (Ray's head on the allocation's first "
                             "node, each node's CPUs from --cpus-per-task); leave it out")
    args = parser().parse_args(["run", suite, *flags])
    if args.backend != "ray":
        raise UsageError(f"--backend {args.backend}: {SCRIPT} runs the suite on Ray across "
                         "the allocation; leave --backend out")
    loaded, _jobs = load_jobs(suite, quiet=True, max_jobs=args.max_jobs)
    res = loaded.resources
    if res.cpus > alloc.cpus or res.gpus > alloc.gpus:
        raise UsageError(
            f"{suite}: resources: a job asks for {res.cpus:g} CPUs and {res.gpus:g} GPUs, a "
            f"node of this allocation has {alloc.cpus} CPUs and {alloc.gpus} GPUs for Ray; "
            "ask for more with sbatch --cpus-per-task / --gpus-per-node, or lower resources")
    if args.tracking_uri is not None:
        uri, origin = args.tracking_uri, "--tracking-uri"
    elif env.get("MLFLOW_TRACKING_URI"):
        uri, origin = env["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI"
    else:
        return None
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else "sqlite"
    if alloc.nodes > 1 and scheme in FILE_SCHEMES:
        raise UsageError(
            f"{origin}: a {scheme} store is a file on one node, and the jobs on the other "
            f"{alloc.nodes - 1} node(s) log too; name a server every node reaches "
            "(http://HOST:PORT, postgresql://…), or name none: the script then starts an "
            "MLflow server on the head node")
    check_tracking_uri(uri, origin, probe=True)
    return uri


def head_ip(env: Mapping[str, str] | None = None) -> str:
    """``$NFBENCH_HEAD_IP``, else the address Ray picks for this node."""
    env = os.environ if env is None else env
    if env.get("NFBENCH_HEAD_IP"):
        return env["NFBENCH_HEAD_IP"]
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def wait_nodes(address: str, n: int, seconds: float) -> str | None:
    """Wait until ``n`` Ray nodes are alive; None, or why not."""
    import ray

    from .schedule.ray_backend import enable_token_auth

    enable_token_auth()
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        deadline = time.monotonic() + seconds
        alive = 0
        while time.monotonic() < deadline:
            alive = sum(1 for node in ray.nodes() if node.get("Alive"))
            if alive >= n:
                return None
            time.sleep(1.0)
        return f"{alive} of {n} Ray nodes joined within {seconds:g} s"
    finally:
        ray.shutdown()


def wait_http(url: str, seconds: float) -> str | None:
    """Wait until ``url`` answers (any HTTP status); None, or why not."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + seconds
    why = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return None
        except urllib.error.HTTPError:
            return None
        except OSError as exc:
            why = str(getattr(exc, "reason", exc))
            time.sleep(1.0)
    return f"{url} did not answer within {seconds:g} s ({why})"


def _ray_exe() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "ray")
    return beside if os.path.isfile(beside) else "ray"


def main(argv: list[str] | None = None) -> int:
    from .registry import UnknownNameError
    from .suite import SuiteError
    from .tracking.uri import TrackingUriError

    argv = sys.argv[1:] if argv is None else argv
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "check" and rest:
            print(check_run(rest[0], rest[1:], allocation()) or "")
        elif command == "ray" and rest and rest[0] in ("head", "worker"):
            role, opts = rest[0], dict(a.split("=", 1) for a in rest[1:] if "=" in a)
            args = ray_start_args(role, allocation(), node_ip=opts.get("--node-ip"),
                                  port=int(opts["--port"]) if "--port" in opts else None,
                                  address=opts.get("--address"))
            sys.stdout.flush()
            os.execv(_ray_exe(), [_ray_exe(), *args])
        elif command == "head-ip":
            print(head_ip())
        elif command == "free-port":
            print(_free_port(rest[0] if rest else ""))
        elif command == "token":
            print(secrets.token_hex(32))
        elif command in ("wait-nodes", "wait-http"):
            why = (wait_nodes(rest[0], int(rest[1]), float(rest[2])) if command == "wait-nodes"
                   else wait_http(rest[0], float(rest[1])))
            if why:
                print(f"error: {why}", file=sys.stderr)
                return 1
        else:
            raise UsageError(f"python -m harness.slurm: unknown command {' '.join(argv)[:80]!r}"
                             "; see the module's docstring")
    except SuiteError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (UsageError, TrackingUriError, UnknownNameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
