"""Tracking URIs that may carry credentials: what may be printed, what a job is given.

An MLflow server behind basic authentication can be named with its credentials in the URI,
``http://user:password@host:5000``. Such a URI is never printed as it is (:func:`mask_uri`)
and never put on a command line: :func:`split_credentials` separates the credentials so that
they travel in the environment variables MLflow reads (``MLFLOW_TRACKING_USERNAME``,
``MLFLOW_TRACKING_PASSWORD``), and the URI that is passed on carries none.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["MASK", "mask_uri", "split_credentials"]

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
