"""Checking a tracking URI before anything is created: a known scheme, a store that can exist.

``nfbench`` refuses a tracking URI it cannot use before it creates a store, an experiment or a
Ray instance (exit status 2, one line naming the flag or variable):

- the scheme must be one MLflow serves here: ``sqlite``, ``http``, ``https``, ``file``, or a
  database (``postgresql``, ``mysql``, ``mssql``, each optionally ``+driver``); a path
  without a scheme is accepted only when it ends in ``.db`` (an SQLite file);
- ``sqlite:///PATH``: PATH's folder must exist (MLflow would create it silently), PATH must
  not be a folder, and an in-memory database is refused (workers could not share it); for
  reading (``report``, ``compare``) the file itself must exist, so that a typo leaves no
  empty ``mlflow.db`` behind;
- ``http(s)://HOST:PORT``: the server must answer ``GET /health`` within a few seconds
  (MLflow's client would retry for minutes) with 200, or 401 / 403 behind authentication;
- a database host must accept a TCP connection within the same time.

Credentials in a URI (``https://user:secret@host``, a server behind basic authentication)
are never printed as they are (:func:`mask_uri`) and never put on a command line:
:func:`split_credentials` separates them so that they travel in the environment variables
MLflow reads (``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``).
"""

from __future__ import annotations

import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["MASK", "PROBE_TIMEOUT_S", "TrackingUriError", "check_tracking_uri", "mask_uri",
           "split_credentials"]

PROBE_TIMEOUT_S = 3.0
_DB_SCHEME = re.compile(r"^(postgresql|mysql|mssql)(\+[a-z0-9_]+)?$")
_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
ALLOWED = "sqlite:///PATH.db, http(s)://HOST:PORT, file:///DIR, postgresql|mysql|mssql[+driver]://…"
MASK = "***"


def _host(netloc: str) -> str:
    """``netloc`` without its ``user[:password]@`` part (the last ``@`` ends it)."""
    return netloc.rpartition("@")[2]


def mask_uri(uri: str) -> str:
    """``uri`` as it may be printed: a password in it becomes ``***``, and so does every
    query value (database URIs can carry ``?password=…``).

    ``http://alice:s3cret@10.0.0.5:5000`` → ``http://alice:***@10.0.0.5:5000``; a URI with
    neither (``sqlite:////abs/mlflow.db``, ``http://host:5000``) comes back unchanged. A user
    name alone (``http://token@host``, the way some servers take a token) is masked too.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:  # unparsable (an unbalanced '[' in the host): show nothing of it
        return MASK
    if "@" not in parts.netloc and not parts.query:
        return uri
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, sep, _password = userinfo.partition(":")
        shown = f"{user}:{MASK}" if sep else MASK
        parts = parts._replace(netloc=f"{shown}@{_host(parts.netloc)}")
    if parts.query:
        keys = [pair.partition("=")[0] for pair in parts.query.split("&")]
        parts = parts._replace(query="&".join(f"{k}={MASK}" for k in keys))
    return urlunsplit(parts)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """``(uri without credentials, user name, password)``; the names are None when absent.

    Percent-escapes in the user name and password are decoded (``p%40ss`` is ``p@ss``), as
    HTTP clients do when they read credentials from a URI.
    """
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    userinfo = parts.netloc.rpartition("@")[0]
    user, sep, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=_host(parts.netloc)))
    return bare, unquote(user) or None, unquote(password) if sep else None


class TrackingUriError(ValueError):
    """A tracking URI nfbench cannot use (the message names where it came from and the fix)."""


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}… ({len(text):,} characters)"


def _within(seconds: float, fn: Callable[[], str | None]) -> str | None:
    """``fn()`` (a reason, or None when fine), or a timeout reason after ``seconds`` (DNS
    look-ups included: the call runs in a daemon thread that is left behind)."""
    result: list[str | None] = []

    def run() -> None:
        try:
            result.append(fn())
        except Exception as exc:  # noqa: BLE001 — any failure is the reason
            result.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds + 0.5)
    return result[0] if result else f"no answer within {seconds:g} s"


def _probe_http(parts: urllib.parse.SplitResult, timeout: float) -> str | None:
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health",
                                   "", ""))

    def get() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=timeout):
                return None
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                return None  # an MLflow server behind authentication
            return (f"{url} answered HTTP {exc.code}, where an MLflow server answers 200: "
                    "not an MLflow server, or a proxy that cannot reach it")
        except (urllib.error.URLError, OSError) as exc:
            return str(getattr(exc, "reason", exc))

    return _within(timeout, get)


def _probe_tcp(host: str, port: int, timeout: float) -> str | None:
    def connect() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            return exc.strerror or str(exc)

    return _within(timeout, connect)


def _sqlite_path(uri: str) -> str:
    rest = uri[len("sqlite:"):]
    if not rest.startswith("///"):
        raise ValueError("write sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return rest[3:].split("?", 1)[0]


def check_tracking_uri(uri: str, origin: str, *, must_exist: bool = False,
                       probe: bool = True, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`TrackingUriError` when ``uri`` cannot be used (see the module docstring).

    Arguments:
        uri: the URI as given (relative SQLite paths are relative to the working directory).
        origin: where it came from, for the message (``--tracking-uri``, …).
        must_exist: the store must exist already (reading: ``report``, ``compare``).
        probe: reach a server or database host (off where the URI is the cluster's view).
    """
    shown = _clip(mask_uri(uri))

    def refuse(why: str) -> TrackingUriError:
        return TrackingUriError(f"{origin}: {why}")

    if not uri.strip():
        raise refuse(f"the tracking URI is empty; give one of {ALLOWED}")
    if "://" not in uri and not uri.startswith(("sqlite:", "file:")):
        if uri.endswith(".db"):  # a bare SQLite file path
            uri = f"sqlite:///{uri}"
        else:
            raise refuse(f"'{shown}' is not a tracking URI; give one of {ALLOWED}")
    scheme = uri.split(":", 1)[0].lower()
    if scheme == "sqlite":
        try:
            raw = _sqlite_path(uri)
        except ValueError as exc:
            raise refuse(f"'{shown}': {exc}") from None
        if raw in ("", ":memory:"):
            raise refuse(f"'{shown}' is an in-memory database, which the workers cannot "
                         "share; give a file, sqlite:///mlflow.db")
        path = Path(raw).expanduser()
        if path.is_dir():
            raise refuse(f"'{shown}': {_clip(str(path))} is a folder; name a file inside it, "
                         f"e.g. sqlite:///{_clip(str(path / 'mlflow.db'))}")
        if must_exist and not path.is_file():
            raise refuse(f"no MLflow store at {_clip(str(path))}; run a suite first, or point "
                         "--tracking-uri at the store that holds it")
        if not path.parent.is_dir():
            raise refuse(f"the folder {_clip(str(path.parent))} of '{shown}' does not exist; "
                         "create it first (nfbench creates no folder for a store)")
        return
    if scheme == "file":
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)).expanduser()
        if must_exist and not path.is_dir():
            raise refuse(f"no MLflow file store at {_clip(str(path))}")
        if not path.parent.is_dir():
            raise refuse(f"the folder {_clip(str(path.parent))} of '{shown}' does not exist; "
                         "create it first")
        return
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"'{shown}' is not a valid URI ({exc})") from None
    if scheme in ("http", "https") or _DB_SCHEME.match(scheme):
        if not parts.hostname:
            raise refuse(f"'{shown}' names no host; write {scheme}://HOST:PORT")
        if not probe:
            return
        if scheme in ("http", "https"):
            why = _probe_http(parts, timeout)
        else:
            base = scheme.split("+", 1)[0]
            why = _probe_tcp(parts.hostname, port or _DB_PORTS[base], timeout)
        if why:
            raise refuse(f"cannot reach {shown} ({_clip(why, 200)}); start the server or "
                         "check the address")
        return
    raise refuse(f"the scheme '{_clip(scheme, 30)}' of '{shown}' is not one nfbench uses; "
                 f"give one of {ALLOWED}")
