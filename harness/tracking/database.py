"""Direct, read-only access to a database tracking store's tables (SQLite, PostgreSQL, MySQL,
SQL Server), through MLflow's own SQLAlchemy table models.

MLflow's API reads a run with all of its parameters, tags and metrics; a reader that needs a
few columns of many runs (the report's table, the driver's index of a suite's jobs) asks the
tables directly instead, and falls back to the API for any other store or any surprise.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

__all__ = ["DATABASE_SCHEMES", "database_url", "fast_tables"]

DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def database_url(uri: str) -> str | None:
    """The SQLAlchemy URL of a database tracking URI (SQLite: the existing file, opened
    read-only), None for any other store (a server, a file store)."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in DATABASE_SCHEMES:
        return None
    if scheme == "sqlite":
        path = Path(unquote(uri.removeprefix("sqlite:///").split("?", 1)[0]))
        if not uri.startswith("sqlite:///") or not path.is_file():
            return None
        return f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
    return uri


def fast_tables():
    """The tables the direct reads use, as MLflow's own SQLAlchemy models declare them (so a
    query is quoted for each database's dialect, and a column MLflow renames is an
    ``AttributeError`` here, not a wrong answer)."""
    from mlflow.store.tracking.dbmodels import models as m

    return m.SqlExperiment, m.SqlRun, m.SqlParam, m.SqlTag, m.SqlLatestMetric
