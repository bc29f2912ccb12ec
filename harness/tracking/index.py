"""The driver's index of a suite's job runs: for each job key, its runs' few facts that the
bookkeeping needs (run id, status, phase, attempts, artifact location), newest first.

MLflow's API reads a run with all of its parameters, tags and metrics, about 3 ms a run on
SQLite: a whole-suite read at 10^5 jobs would take minutes before a re-run could start its
first job. On a database store the index is instead one query over two of MLflow's tables::

    SELECT r.run_uuid, r.start_time, r.artifact_uri, t.key, t.value
      FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid
     WHERE r.experiment_id = :suite AND r.lifecycle_stage = 'active'
       AND t.key IN ('nfbench.key', 'nfbench.status', 'nfbench.phase', …)
       [AND r.run_uuid IN (SELECT run_uuid FROM tags
                            WHERE key = 'nfbench.key' AND value IN (:keys))]
       [AND (r.start_time >= :since OR r.end_time >= :since)]

and any other store (an MLflow server), or a query that fails, is read through
``search_runs``. The ``since`` form is how a driver waiting on other drivers reads what
changed (runs created or ended since its last look), not the whole suite.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow.entities import ViewType

from .. import keys
from .database import database_url, fast_tables
from .uri import mask_uri

__all__ = ["JobIndex", "RunRef"]

_TAGS = (keys.TAG_KEY, keys.TAG_STATUS, keys.TAG_PHASE, keys.TAG_ATTEMPTS, keys.TAG_ERROR)
_CHUNK = 500  # keys per IN (…) list


@dataclass(frozen=True)
class RunRef:
    """What the bookkeeping knows of one run of a job key."""

    run_id: str
    key: str
    status: str = keys.STATUS_RUNNING  # nfbench's status tag (running when absent)
    phase: str = ""  # "" (nothing done), "trained" or "timed"
    attempts: int = 0  # workers that died under the job in earlier drivers
    artifact_uri: str | None = None
    has_error: bool = False  # the run carries an earlier attempt's error tag
    start_time: int = 0  # ms since the epoch

    @classmethod
    def of_run(cls, run) -> RunRef:
        """The reference of an MLflow ``Run`` entity."""
        return cls._of(run.info.run_id, run.info.start_time or 0, run.info.artifact_uri,
                       run.data.tags)

    @classmethod
    def _of(cls, run_id: str, start: int, artifact_uri: str | None,
            tags: dict[str, str]) -> RunRef:
        try:
            attempts = int(tags.get(keys.TAG_ATTEMPTS, 0) or 0)
        except ValueError:
            attempts = 0
        return cls(run_id, tags.get(keys.TAG_KEY, ""),
                   tags.get(keys.TAG_STATUS, keys.STATUS_RUNNING), tags.get(keys.TAG_PHASE, ""),
                   attempts, artifact_uri, keys.TAG_ERROR in tags, int(start or 0))


class JobIndex:
    """Reads a suite experiment's job runs as :class:`RunRef` s grouped by key."""

    def __init__(self, client, uri: str, experiment_id: str, retry=None):
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self._retry = retry or (lambda fn, *a, **k: fn(*a, **k))
        self._url = database_url(uri)
        self._engine = None
        self.ops = 0  # store operations made (queries or API pages)

    def read(self, keys_: Iterable[str] | None = None,
             since_ms: int | None = None) -> dict[str, list[RunRef]]:
        """The active runs with a job key, grouped by key, newest first: every key's, or
        those of ``keys_``, or only the runs created or ended at ``since_ms`` or later."""
        wanted = None if keys_ is None else list(dict.fromkeys(keys_))
        if wanted == []:
            return {}
        refs = None
        if self._url is not None:
            try:
                refs = self._read_sql(wanted, since_ms)
            except Exception as exc:  # noqa: BLE001 (any surprise: MLflow's API answers)
                logging.getLogger(__name__).warning(
                    "indexing %s through MLflow's API (the direct query failed: %s)",
                    mask_uri(self.uri), str(exc).splitlines()[0][:200] if str(exc) else
                    repr(exc))
                self._url = None
        if refs is None:
            refs = self._read_api(wanted, since_ms)
        out: dict[str, list[RunRef]] = {}
        only = None if wanted is None else set(wanted)
        for ref in sorted(refs, key=lambda r: (-r.start_time, r.run_id)):
            if ref.key and (only is None or ref.key in only):
                out.setdefault(ref.key, []).append(ref)
        return out

    # ── a database store ───────────────────────────────────────────────────────────────
    def _read_sql(self, wanted: list[str] | None, since_ms: int | None) -> list[RunRef]:
        import sqlalchemy as sa

        _, run_t, _, tag_t, _ = fast_tables()
        if self._engine is None:
            self._engine = sa.create_engine(self._url, poolclass=sa.pool.NullPool)
        base = [run_t.experiment_id == int(self.experiment_id),
                run_t.lifecycle_stage == "active", tag_t.key.in_(_TAGS)]
        if since_ms is not None:
            base.append(sa.or_(run_t.start_time >= since_ms, run_t.end_time >= since_ms))
        chunks: list[list[str] | None] = [None] if wanted is None else [
            wanted[i : i + _CHUNK] for i in range(0, len(wanted), _CHUNK)]
        runs: dict[str, tuple[int, str | None, dict[str, str]]] = {}
        with self._engine.connect() as con:
            for chunk in chunks:
                cond = list(base)
                if chunk is not None:
                    cond.append(run_t.run_uuid.in_(sa.select(tag_t.run_uuid).where(
                        tag_t.key == keys.TAG_KEY, tag_t.value.in_(chunk))))
                self.ops += 1
                rows = con.execute(sa.select(
                    run_t.run_uuid, run_t.start_time, run_t.artifact_uri, tag_t.key,
                    tag_t.value).join(tag_t, tag_t.run_uuid == run_t.run_uuid).where(*cond))
                for rid, start, art, key, value in rows:
                    runs.setdefault(rid, (start, art, {}))[2][key] = value
        return [RunRef._of(rid, start, art, tags) for rid, (start, art, tags) in runs.items()]

    # ── any other store ────────────────────────────────────────────────────────────────
    def _search(self, flt: str) -> list[RunRef]:
        out, token = [], None
        while True:
            self.ops += 1
            page = self._retry(self.client.search_runs, [self.experiment_id],
                               filter_string=flt, run_view_type=ViewType.ACTIVE_ONLY,
                               max_results=1000, page_token=token)
            out.extend(RunRef.of_run(r) for r in page)
            token = page.token
            if not token:
                return out

    def _read_api(self, wanted: list[str] | None, since_ms: int | None) -> list[RunRef]:
        if since_ms is not None:  # MLflow's filters have no OR: created, then ended
            found = {r.run_id: r for r in self._search(f"attributes.start_time >= {since_ms}")}
            found.update((r.run_id, r) for r in self._search(
                f"attributes.end_time >= {since_ms}"))
            return list(found.values())
        if wanted is None:
            return self._search("")
        return [r for k in wanted for r in self._search(f"tags.`{keys.TAG_KEY}` = '{k}'")]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
