"""A throwaway two-node Slurm cluster on this host, from Debian's packages, for the tests.

Everything lives in a temporary folder: a munge daemon of its own (its key, socket, pid and
log files there; run as the ``munge`` user that Debian's package creates), a ``slurm.conf``
whose controller and two nodes ``n1`` and ``n2`` are all this host on loopback, on free
ports, and the controller's state, the nodes' spools, pid and log files. Clients (``sbatch``,
``squeue``, ``srun`` inside a job) find the cluster through ``$SLURM_CONF``
(:meth:`SlurmCluster.env`). :meth:`SlurmCluster.stop` stops each daemon by the PID in its pid
file and removes the folder. A node's ``slurmd`` can be killed and started again
(:meth:`SlurmCluster.kill_node`, :meth:`SlurmCluster.start_node`), as a node failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["NODES", "SlurmCluster", "why_not"]

NODES = ("n1", "n2")
CPUS_PER_NODE = 2
DAEMONS = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue", "sinfo", "srun",
           "scontrol", "scancel")


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.is_file()),
        None)


def why_not() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        return (f"Slurm or munge is not installed ({', '.join(missing)} missing): "
                "apt-get install -y slurm-wlm munge; scripts/setup.sh --dev and CI install them")
    if os.geteuid() != 0:
        return "the test cluster's slurmd must run as root (it starts jobs as their user)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user to run munged as (Debian's munge package creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SlurmCluster:
    """Controller and two nodes of one host, with munge (see the module docstring)."""

    def __init__(self, slurmd_timeout: int = 10) -> None:
        reason = why_not()
        if reason:
            raise RuntimeError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="nfbench-slurm-"))
        self.root.chmod(0o755)  # munge must reach its folder inside
        self.conf = self.root / "slurm.conf"
        self.munge = self.root / "munge"
        self._munged_pid: int | None = None
        try:
            self._start_munge()
            self._write_conf(slurmd_timeout)
            self._daemon(["slurmctld"], self.root / "slurmctld.pid")
            for node in NODES:
                self.start_node(node)
            self.wait_idle()
        except BaseException:
            self.stop()
            raise

    # ── set-up ──────────────────────────────────────────────────────────────────────────
    def _start_munge(self) -> None:
        user = pwd.getpwnam("munge")
        self.munge.mkdir(mode=0o700)
        os.chown(self.munge, user.pw_uid, user.pw_gid)
        key = self.munge / "munge.key"
        self._run(["runuser", "-u", "munge", "--", _which("mungekey"), "--create",
                   f"--keyfile={key}"])
        self._run(["runuser", "-u", "munge", "--", _which("munged"), "--force",
                   f"--socket={self.munge / 'munge.socket'}", f"--key-file={key}",
                   f"--pid-file={self.munge / 'munged.pid'}",
                   f"--log-file={self.munge / 'munged.log'}",
                   f"--seed-file={self.munge / 'munged.seed'}"])
        self._munged_pid = self._wait_pid(self.munge / "munged.pid")

    def _write_conf(self, slurmd_timeout: int) -> None:
        host = socket.gethostname()
        (self.root / "state").mkdir()
        lines = [
            "ClusterName=nfbench-test",
            f"SlurmctldHost={host}",
            f"SlurmctldPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge / 'munge.socket'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MpiDefault=none",
            "ReturnToService=2",  # a node that comes back is usable again
            f"SlurmdTimeout={slurmd_timeout}",  # a silent node is down after this
            "KillWait=5",
            "InactiveLimit=0",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool-%n'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'slurmd-%n.log'}",
        ]
        for node in NODES:
            lines.append(f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 "
                         f"Port={_free_port()} CPUs={CPUS_PER_NODE} State=UNKNOWN")
        lines.append(f"PartitionName=test Nodes={','.join(NODES)} Default=YES "
                     "MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")

    # ── processes ───────────────────────────────────────────────────────────────────────
    def env(self) -> dict[str, str]:
        """The environment of a Slurm client of this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _run(self, cmd: list[str], timeout: float = 60) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=self.env(), check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                               f"{done.stdout[-1000:]}{done.stderr[-2000:]}{self.logs()}")
        return done.stdout

    def _daemon(self, cmd: list[str], pid_file: Path) -> int:
        self._run([_which(cmd[0]), *cmd[1:]])
        return self._wait_pid(pid_file)

    def _wait_pid(self, pid_file: Path, seconds: float = 30) -> int:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
                if _alive(pid):
                    return pid
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no live process in {pid_file}{self.logs()}")

    def start_node(self, node: str) -> int:
        """Start ``node``'s slurmd; its PID."""
        return self._daemon(["slurmd", "-N", node], self.root / f"slurmd-{node}.pid")

    def kill_node(self, node: str) -> None:
        """SIGKILL ``node``'s slurmd (its jobs' steps run on, as on a node whose daemon died)."""
        self._kill(self.root / f"slurmd-{node}.pid", signal.SIGKILL)

    def sinfo(self) -> str:
        return self._run([_which("sinfo"), "-h", "-N", "-o", "%N %t"])

    def wait_idle(self, nodes: tuple[str, ...] = NODES, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            states = dict(line.split() for line in self.sinfo().splitlines())
            if all(states.get(n) == "idle" for n in nodes):
                return
            time.sleep(0.5)
        raise RuntimeError(f"nodes not idle: {self.sinfo()}{self.logs()}")

    def sbatch(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
        """Submit; the job's id."""
        done = subprocess.run([_which("sbatch"), "--parsable", *args], cwd=cwd,
                              capture_output=True, text=True, timeout=60,
                              env={**self.env(), **(env or {})}, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed: {done.stderr}{self.logs()}")
        return done.stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> str | None:
        """The job's state (PENDING, RUNNING, …), or None once the controller forgot it."""
        done = subprocess.run([_which("squeue"), "-h", "-j", job_id, "-o", "%T"],
                              capture_output=True, text=True, timeout=30, env=self.env(),
                              check=False)
        return done.stdout.strip() or None

    def wait_job(self, job_id: str, seconds: float) -> None:
        """Until the job has left the queue."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.job_state(job_id) is None:
                return
            time.sleep(1.0)
        raise TimeoutError(f"job {job_id} still {self.job_state(job_id)} after {seconds} s")

    def logs(self) -> str:
        out = []
        for log in sorted(self.root.glob("*.log")) + sorted(self.munge.glob("*.log")):
            try:
                out.append(f"\n{log.name}:\n{log.read_text()[-1500:]}")
            except OSError:
                pass
        return "".join(out)

    def _kill(self, pid_file: Path, sig: int = signal.SIGTERM) -> None:
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Cancel what is left, stop the daemons by their pid files, remove the folder."""
        try:
            if (self.root / "slurmctld.pid").exists():
                subprocess.run([_which("scancel"), "--full", "-u", "root"], env=self.env(),
                               capture_output=True, timeout=30, check=False)
            for node in NODES:
                self._kill(self.root / f"slurmd-{node}.pid")
            self._kill(self.root / "slurmctld.pid")
            if self._munged_pid is not None:
                self._kill(self.munge / "munged.pid")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
