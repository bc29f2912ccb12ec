"""A vectors-only flow seen through image-shaped data (digits as a 64-vector for MAF)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Flattened"]


class Flattened(nn.Module):
    """Wraps a flow on vectors of size prod(shape) so that it takes and gives ``shape``."""

    def __init__(self, flow: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.flow, self.shape = flow, tuple(shape)
        self.event_shape = self.shape

    def transform(self, x: Tensor, context: Tensor | None = None, with_log_det: bool = True):
        z, ld = self.flow.transform(x.flatten(1), context=context, with_log_det=with_log_det)
        return z, ld

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.inverse(z.flatten(1), context=context).unflatten(1, self.shape)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.log_prob(x.flatten(1), context=context)

    def sample(self, n: int, context: Tensor | None = None) -> Tensor:
        return self.flow.sample(n, context=context).unflatten(1, self.shape)

    def stability(self) -> dict[str, float]:
        return self.flow.stability() if hasattr(self.flow, "stability") else {}

    def forward(self, x: Tensor) -> Tensor:  # nn.Module API: the log-density
        return self.log_prob(x)
