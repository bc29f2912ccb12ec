"""Trained flows as MLflow LoggedModels: logging one (worker side), loading one safely.

A finished job's best weights become a LoggedModel of its run (MLflow 3's model of a
checkpoint worth keeping), in MLflow's *models-from-code* form: the code is nfbench's
``harness/logged_flow.py``, the artifacts are the flow's ``weights.pt`` (a plain state dict,
loaded weights-only) and ``flow.json`` (what rebuilds it), both written by
:mod:`harness.job.export`. No pickle is written or read. The model carries the run's params and
the job's tags, appears among the run's outputs (the runs table's Models column), and the
metrics :data:`harness.keys.MODEL_LINKED` are linked to it and to the run's data set, so that
``mlflow.search_logged_models(order_by=[{"field_name": "metrics.eval/bpd"}])`` ranks flows.

:func:`load_flow` is the careful way in: it refuses a model directory whose MLmodel is not
nfbench's models-from-code, that holds a pickle MLflow would unpickle (``python_model.pkl``,
any ``*.pkl``), or whose code is not this nfbench's, before anything in it runs.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric

from .. import keys
from .conventions import DIGEST_LEN

__all__ = ["CODE", "MODEL_TYPE", "ModelRefused", "check_model_dir", "download", "load_flow",
           "log_flow", "register", "warm_up"]

CODE = Path(__file__).resolve().parents[1] / "logged_flow.py"  # the models-from-code file
MODEL_TYPE = "normalizing-flow"
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"  # MLflow's loader of models-from-code
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib")
WEIGHTS_ARTIFACT, SPEC_ARTIFACT = "weights", "spec"  # as harness/logged_flow.py names them


class ModelRefused(RuntimeError):
    """A model directory that could run code other than nfbench's on loading."""


def _requirements() -> list[str]:
    """Pinned requirements (given, so that MLflow does not load the model to infer them)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("mlflow", "torch", "numpy"):
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # pragma: no cover - every worker has them
            out.append(name)
    return out


def warm_up() -> threading.Thread:
    """Start building, in a background thread, what logging a model needs once per process:
    MLflow checks a model's pinned requirements against the installed packages through a map
    of every installed distribution, built on first use (2 s, more on a busy machine). A
    worker calls this when it starts, so that its first job does not wait for it."""

    def build() -> None:
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        warn_dependency_requirement_mismatches(_requirements())

    thread = threading.Thread(target=build, name="nfbench-model-warm-up", daemon=True)
    thread.start()
    return thread


def _linked(client, run_id: str, model_id: str, metrics: dict[str, float], step: int,
            link: Sequence[str], dataset: tuple[str, str] | None) -> list[Metric]:
    """The metrics to link: ``metrics`` (new, at ``step``), and each of ``link`` that the run
    already has, with its own timestamp and step (the run's history then gains nothing)."""
    name, digest = dataset if dataset else (None, None)
    now = int(time.time() * 1000)
    out = [Metric(k, float(v), now, int(step), model_id=model_id, dataset_name=name,
                  dataset_digest=digest, run_id=run_id) for k, v in metrics.items()]
    for key in link:
        if key in metrics:
            continue
        history = client.get_metric_history(run_id, key)
        if history:
            m = max(history, key=lambda m: (m.step, m.timestamp))
            out.append(Metric(key, m.value, m.timestamp, m.step, model_id=model_id,
                              dataset_name=name, dataset_digest=digest, run_id=run_id))
    return out


def log_flow(client, run_id: str, local: Path, name: str, *, metrics: dict[str, float],
             step: int, link: Sequence[str] = (), dataset: tuple[str, str] | None = None,
             tags: dict[str, Any] | None = None, call=None) -> str:
    """Log the flow in ``local`` (``weights.pt``, ``flow.json``) as a LoggedModel of run
    ``run_id``; ``metrics`` are written to the run linked to the model, ``link`` names metrics
    the run has already, linked as they are; ``dataset``: (name, fingerprint). One model per
    run: an earlier attempt's is deleted. Returns the model id (the run gets it as the tag
    :data:`harness.keys.TAG_MODEL`)."""
    import mlflow.pyfunc
    from mlflow.models import Model

    call = call or (lambda fn, *a, **kw: fn(*a, **kw))
    run = call(client.get_run, run_id)
    for earlier in (run.outputs.model_outputs if run.outputs else []):
        call(client.delete_logged_model, earlier.model_id)
    ds = None if dataset is None else (dataset[0], dataset[1][:DIGEST_LEN])
    model = call(client.create_logged_model, run.info.experiment_id, name=name,
                 source_run_id=run_id, model_type=MODEL_TYPE,
                 tags={k: str(v) for k, v in (tags or {}).items()},
                 params={k: str(v) for k, v in run.data.params.items()})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        meta = Model(artifact_path=model.artifact_location, run_id=run_id,
                     model_id=model.model_id, model_uuid=model.model_id)
        with warnings.catch_warnings():  # its advice on type hints is for signature inference
            warnings.filterwarnings("ignore", message=".*type hints.*", category=UserWarning)
            mlflow.pyfunc.save_model(
                path, python_model=str(CODE), mlflow_model=meta,
                pip_requirements=_requirements(),
                artifacts={WEIGHTS_ARTIFACT: str(local / keys.ART_MODEL_WEIGHTS),
                           SPEC_ARTIFACT: str(local / keys.ART_MODEL_SPEC)})
        call(client.log_model_artifacts, model.model_id, str(path))
    call(client.finalize_logged_model, model.model_id, LoggedModelStatus.READY)
    call(client.log_outputs, run_id, [LoggedModelOutput(model.model_id, step=int(step))])
    linked = _linked(client, run_id, model.model_id, metrics, step, link, ds)
    call(client.log_batch, run_id, metrics=linked, tags=[_tag(model.model_id)])
    return model.model_id


def register(client, name: str, alias: str, model_id: str, run_id: str,
             description: str = "") -> int:
    """Point ``models:/name@alias`` at LoggedModel ``model_id`` (of run ``run_id``): the
    registered model ``name`` is made when missing, the model's version is reused when it was
    registered before (promoting twice adds no version). The version number."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description or None)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    # the source is the model's own location: MLflow's store resolves a models:/ source
    # through the process's default tracking URI, not the client's
    source = client.get_logged_model(model_id).artifact_location
    version = next((v for v in client.search_model_versions(f"name = '{name}'")
                    if v.source == source), None)
    if version is None:
        version = client.create_model_version(name, source, run_id=run_id, model_id=model_id)
    client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def _tag(model_id: str):
    from mlflow.entities import RunTag

    return RunTag(keys.TAG_MODEL, model_id)


def _code_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_model_dir(root: Path) -> None:
    """Refuse (:class:`ModelRefused`) a local model directory that could run anything but
    nfbench's own code on loading: a pickle anywhere in it, an MLmodel that is not
    models-from-code, or code that differs from this nfbench's ``logged_flow.py``."""
    import yaml

    pickles = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                     if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ModelRefused(f"{root}: refused: it holds pickled objects ({', '.join(pickles)}), "
                           "which loading would run; an nfbench flow holds only weights.pt, "
                           "flow.json and its code. Re-log it from its run (nfbench run "
                           "--force) rather than load this copy")
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise ModelRefused(f"{root}: no MLmodel file: not an MLflow model directory")
    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get(
        "python_function", {})
    code = flavor.get("model_code_path")
    if not code or flavor.get("loader_module") != CODE_LOADER or "python_model" in flavor:
        raise ModelRefused(f"{root}/MLmodel: not a models-from-code pyfunc model (loader "
                           f"{flavor.get('loader_module')!r}): not an nfbench flow; re-log it "
                           "from its run")
    if flavor.get("code") or (root / "code").exists():
        raise ModelRefused(f"{root}: it ships code paths (code/), which loading would put "
                           "first on sys.path; an nfbench flow has none: re-log it from its run")
    shipped = root / Path(code).name
    if not shipped.is_file() or _code_digest(shipped) != _code_digest(CODE):
        raise ModelRefused(f"{root}: its code {Path(code).name} is not this nfbench's "
                           f"{CODE.name}; load it with the nfbench it was logged with, or "
                           "re-log it from its run")


def _location(client, uri: str) -> str:
    """Where the model of ``models:/<model id>``, ``models:/NAME@ALIAS`` or
    ``models:/NAME/VERSION`` lies (through ``client``, not the process's default store)."""
    ref = uri.removeprefix("models:/").strip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias).source
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return client.get_model_version(name, version).source
    return client.get_logged_model(ref).artifact_location


def download(uri: str, dst: Path, tracking_uri: str | None = None) -> Path:
    """A local copy of the model at ``models:/…`` ``uri`` of the store ``tracking_uri`` (None:
    MLflow's current one, as ``mlflow.pyfunc.load_model`` would use), in ``dst``; nothing in
    it is run."""
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking import MlflowClient

    store = tracking_uri or mlflow.get_tracking_uri()
    location = _location(MlflowClient(store, registry_uri=store), uri)
    dst.mkdir(parents=True, exist_ok=True)
    repo = get_artifact_repository(location, tracking_uri=store)
    return Path(repo.download_artifacts("", str(dst)))


def load_flow(uri: str, tracking_uri: str | None = None):
    """The :class:`harness.logged_flow.LoggedFlow` (``log_prob``, ``sample``) at ``uri`` (a
    ``models:/`` URI of the store ``tracking_uri``, or a local model directory), loaded with
    ``mlflow.pyfunc.load_model`` after :func:`check_model_dir` on a local copy."""
    import mlflow.pyfunc

    local = download(uri, Path(tempfile.mkdtemp(prefix="nfbench-model-")), tracking_uri) \
        if uri.startswith("models:/") else Path(uri)
    check_model_dir(local)
    return mlflow.pyfunc.load_model(str(local)).unwrap_python_model()
