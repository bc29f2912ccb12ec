"""A throwaway PostgreSQL server from Debian's packages, for the tests and the benchmarks.

``initdb`` into a temporary folder, ``pg_ctl start`` on a free loopback port (Unix socket in
the same folder), trust authentication for one user on 127.0.0.1 only (any other role needs
its password); ``stop()`` removes it all. PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` user that Debian's package creates (``runuser``). :func:`binaries`
finds ``initdb`` and ``pg_ctl`` on the path or under ``/usr/lib/postgresql/*/bin`` (Debian keeps
them there).

A database with MLflow's schema made once (:meth:`PostgresServer.mlflow_template`) is
copied for each test (``CREATE DATABASE … TEMPLATE``: milliseconds, where MLflow's
migrations take seconds).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["PostgresServer", "binaries", "why_not"]

USER = "nfbench"


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def why_not() -> str | None:
    """Why no server can be started here (None: it can)."""
    if binaries() is None:
        return ("PostgreSQL is not installed (apt-get install -y postgresql; "
                "scripts/setup.sh --dev and CI install it)")
    try:
        import psycopg  # noqa: F401 (SQLAlchemy 2's driver for postgresql://)
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]'; the dev extras have it)"
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _uid("postgres") is None):
        return "running as root without a 'postgres' user to run the server as"
    return None


def _uid(name: str) -> int | None:
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A PostgreSQL server of its own in a temporary folder (see the module docstring)."""

    def __init__(self) -> None:
        reason = why_not()
        if reason:
            raise RuntimeError(reason)
        self.bin = binaries()
        self.root = Path(tempfile.mkdtemp(prefix="nfbench-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self._template: str | None = None
        if self._as_postgres:  # the server's own user must own its folder
            uid = _uid("postgres")
            os.chown(self.root, uid, -1)
        self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                   "--auth=trust", "--encoding=UTF8", "--no-sync"])
        # the test user without a password; any other role (made by a test) needs its own
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all {USER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                   str(self.root / "server.log"), "-w", "-t", "60", "-o", options, "start"])

    def _run(self, cmd: list[str]) -> str:
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): "
                               f"{done.stderr[-2000:]}{self._log()}")
        return done.stdout

    def _log(self) -> str:
        log = self.root / "server.log"
        return f"\nserver log:\n{log.read_text()[-2000:]}" if log.is_file() else ""

    def uri(self, database: str = "postgres") -> str:
        """The tracking URI of ``database`` (MLflow's form: SQLAlchemy with psycopg2)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """One statement, outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database,
                             autocommit=True) as con:
            con.execute(sql)

    def mlflow_template(self) -> str:
        """A database with MLflow's schema (made once), to copy."""
        if self._template is None:
            from mlflow.tracking import MlflowClient

            self.execute("CREATE DATABASE mlflow_template")
            MlflowClient(self.uri("mlflow_template")).search_experiments(max_results=1)
            _dispose_engines(self.uri("mlflow_template"))
            self._template = "mlflow_template"
        return self._template

    def new_database(self, prefix: str = "t", mlflow: bool = True) -> str:
        """A fresh database (with MLflow's schema when ``mlflow``); its URI."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        template = f" TEMPLATE {self.mlflow_template()}" if mlflow else ""
        for attempt in range(20):  # the template must have no open connection
            try:
                self.execute(f"CREATE DATABASE {name}{template}")
                break
            except Exception as exc:
                if "being accessed by other users" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.25)
        return self.uri(name)

    def stop(self) -> None:
        try:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                       "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _dispose_engines(uri: str) -> None:
    """Close the connections MLflow's cached store holds to ``uri`` (a template database
    must have none when it is copied)."""
    try:
        from mlflow.tracking._tracking_service.utils import _get_store

        store = _get_store(uri)
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 (best effort: new_database retries anyway)
        print(f"note: could not close MLflow's connections to {uri}: {exc}", file=sys.stderr)
