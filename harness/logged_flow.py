"""The code of a logged flow: the MLflow *models-from-code* file of every LoggedModel nfbench
writes (:mod:`harness.tracking.models` logs it; :mod:`harness.job.export` writes its files).

MLflow copies this file into the model and runs it on ``mlflow.pyfunc.load_model(uri)``; it
rebuilds the flow from the model's ``flow.json`` (architecture, hyper-parameters, event shape,
context size, layout) with :func:`harness.flows.build_for_data` and loads ``weights.pt``, a
plain state dict, weights-only (``torch.load(weights_only=True)``): no pickled program is ever
run. nfbench must be importable where the model is loaded.

**What the numbers mean.** The flow is a density on its *data space*, the space of ``w``: the
data after dequantization and preprocessing (``w = logit_α((x + u)/K)`` or ``(x + u)/K + shift``
for discrete data, ``x`` itself for continuous data), of shape ``event_shape``. Then

* ``log_prob(w)`` is ``log p_flow(w)`` in nats per example, shape ``(B,)``; for continuous data
  with no dequantization it is ``log p(x)``, whose negative mean over the test split is the
  run's ``eval/nll``; for discrete data the run's bound adds the dequantizer's ``log_weight``
  (``−D ln K``, the logit's log-det, ``−log q(u | x)``; see :mod:`harness.data.dequantize`),
  which the model does not hold;
* ``sample(n)`` draws ``n`` points of the data space, shape ``(n, *event_shape)``;
* ``predict(w)`` (MLflow's pyfunc call; rows of ``prod(event_shape)`` numbers, a NumPy array
  or a DataFrame) returns ``log_prob`` as a NumPy array.

A conditional flow takes one-hot contexts (``context=``, shape ``(B, context_dim)``).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from harness import flows, keys

__all__ = ["LoggedFlow", "load_weights"]

WEIGHTS, SPEC = "weights", "spec"  # the model's artifact names


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict, loaded weights-only; a file holding anything else (a pickled program) is
    refused with the reason, and nothing in it runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [ln for ln in str(err).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        why = (lines or ["it holds more than weights"])[0].strip()[:300]
        raise RuntimeError(f"{path}: refused to load these weights: {why}. A logged flow's "
                           f"{keys.ART_MODEL_WEIGHTS} may hold only a state dict of tensors; "
                           "re-log the model from its run (nfbench run --force)") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise RuntimeError(f"{path}: not a state dict (names → tensors); re-log the model "
                           "from its run (nfbench run --force)")
    return state


class LoggedFlow(PythonModel):
    """A trained flow behind MLflow's pyfunc interface (see the module docstring)."""

    flow: flows.Flow
    spec: dict
    # predict takes arrays of the data space; no MLflow schema validation by type hints
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        self.spec = json.loads(Path(context.artifacts[SPEC]).read_text())
        s = self.spec
        self.flow = flows.build_for_data(s["arch"], tuple(s["event_shape"]), s["context_dim"],
                                         layout=s["layout"], **s["hparams"])
        self.flow.load_state_dict(load_weights(context.artifacts[WEIGHTS]))
        self.flow.eval()

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.spec["event_shape"])

    @torch.no_grad()
    def log_prob(self, w: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``log p_flow(w)`` in nats, shape ``(B,)``, of points ``w`` of the data space."""
        w = torch.as_tensor(w, dtype=torch.float32).reshape(-1, *self.event_shape)
        return self.flow.log_prob(w, context=context)

    @torch.no_grad()
    def sample(self, n: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples of the data space, shape ``(n, *event_shape)``."""
        return self.flow.sample(int(n), context=context)

    def predict(self, context, model_input, params=None) -> np.ndarray:
        """``log_prob`` of the rows of ``model_input`` (NumPy array or DataFrame)."""
        rows = model_input.to_numpy() if hasattr(model_input, "to_numpy") else model_input
        return self.log_prob(torch.as_tensor(np.asarray(rows, dtype=np.float32))).numpy()


mlflow.models.set_model(LoggedFlow())
