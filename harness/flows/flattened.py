"""Image-shaped data through a flow on vectors: a :class:`Flow` that flattens its input.

A data set of images (``(C, H, W)``) meets a vectors-only architecture (MAF, IAF, NSF-AR,
…), or a suite asks for image data as vectors (the data option ``flatten``): the flow is then
built for vectors of size ``C·H·W`` and wrapped, so that it takes and gives ``(C, H, W)``.
Flattening is a bijection with log-det 0, so likelihoods are unchanged.

Example:
    >>> import torch
    >>> flow = build_for_data("maf", (1, 2, 2))
    >>> type(flow).__name__, flow.event_shape, flow.sample(3).shape
    ('Flattened', (1, 2, 2), torch.Size([3, 1, 2, 2]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from .base import Flow, _as_shape
from .zoo import build, entry

__all__ = ["Flattened", "build_for_data", "model_shape"]


class Flattened(Flow):
    """``inner``, a flow on vectors of size ``prod(shape)``, seen as a flow on ``shape``."""

    def __init__(self, inner: Flow, shape: Sequence[int]):
        super().__init__([], shape, inner.context_dim)
        del self._buffers["_base_anchor"]  # the inner flow's base is the base
        self.flow = inner

    def transform(self, x: Tensor, context: Tensor | None = None,
                  with_log_det: bool = True) -> tuple[Tensor, Tensor | None]:
        return self.flow.transform(x.flatten(1), context=context, with_log_det=with_log_det)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.inverse(z.flatten(1), context=context).unflatten(1, self.event_shape)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.log_prob(x.flatten(1), context=context)

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        return self.flow.sample(n, context=context).unflatten(1, self.event_shape)

    def counters(self) -> dict[str, int]:
        return self.flow.counters()

    def reset_counters(self) -> None:
        self.flow.reset_counters()

    def regularizer(self) -> Tensor | None:
        return self.flow.regularizer()

    def stability(self) -> dict[str, float]:
        return self.flow.stability()


def model_shape(name: str, data_shape: Sequence[int], layout: str = "native") -> tuple[int, ...]:
    """The shape architecture ``name`` is built for, for data of ``data_shape``: the data's
    own, or vectors when the data are images and the layout is ``"vectors"`` or the
    architecture takes vectors only."""
    shape = _as_shape(data_shape)
    if len(shape) > 1 and (layout == "vectors" or not entry(name).meta.get("images", False)):
        return (math.prod(shape),)
    return shape


def build_for_data(name: str, data_shape: Sequence[int], context_dim: int | None = None,
                   layout: str = "native", **hparams: Any) -> Flow:
    """Architecture ``name`` for data of ``data_shape`` (see :func:`model_shape`): built for
    the data's shape, or for vectors and wrapped in :class:`Flattened`."""
    data_shape = _as_shape(data_shape)
    shape = model_shape(name, data_shape, layout)
    flow = build(name, shape if len(shape) > 1 else shape[0], context_dim, **hparams)
    return flow if shape == data_shape else Flattened(flow, data_shape)
