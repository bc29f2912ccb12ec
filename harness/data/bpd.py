"""Bits per dimension: pure functions, one convention.

The convention (``docs/protocols.md``, "Bits per dimension"; Dinh et al. 2017, RealNVP;
Kingma & Dhariwal 2018, Glow ``openai/glow/model.py``; Ho et al. 2019, Flow++): for discrete
data ``x`` with ``K`` levels per dimension, dequantized and preprocessed into the flow's input
``w``,

.. math::
    \\mathrm{bpd} = -\\frac{\\log p_\\text{flow}(w) + \\log\\text{weight}}{D \\ln 2},

where ``log_weight`` holds every preprocessing Jacobian (the ``−D ln K`` of scaling by
``1/K``, the logit's log-det) and, for variational dequantization, ``−log q(u | x)``. With
uniform noise and no logit this is the familiar ``(NLL_nats + D ln K) / (D ln 2)`` where
``NLL_nats`` is measured on data scaled to [0, 1].

For continuous data the same formula with ``log_weight = 0`` gives the NLL in bits per
dimension (the tabular tables report nats per example instead: ``eval/nll``).

Example:
    >>> import torch, math
    >>> ll = torch.tensor([-64 * math.log(17)], dtype=torch.float64)  # uniform on 17 levels
    >>> round(float(bits_per_dim(ll, 64)), 6), round(math.log2(17), 6)
    (4.087463, 4.087463)
"""

from __future__ import annotations

import math

from torch import Tensor

__all__ = ["LN2", "bits_per_dim", "bpd_to_nll", "flow_bits_per_dim", "nll_to_bpd"]

LN2 = math.log(2.0)


def _check_dims(dims: int) -> None:
    if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
        raise ValueError(f"bits_per_dim: dims must be a positive int, got {dims!r}")


def bits_per_dim(log_lik_nats: Tensor, dims: int) -> Tensor:
    """``−log_lik / (D ln 2)``: a (bound on the) log-likelihood per example → bits per dim.

    Arguments:
        log_lik_nats: log-likelihood in nats per example, any shape (usually ``(B,)``), e.g.
            ``log p_flow(w) + log_weight`` from a dequantizer.
        dims: ``D``, the number of data dimensions (``deq.dims``).

    Returns:
        Bits per dimension, same shape as ``log_lik_nats``.
    """
    _check_dims(dims)
    return -log_lik_nats / (dims * LN2)


def nll_to_bpd(nll_nats: Tensor | float, dims: int) -> Tensor | float:
    """``NLL / (D ln 2)``: negative log-likelihood in nats per example → bits per dimension."""
    _check_dims(dims)
    return nll_nats / (dims * LN2)


def bpd_to_nll(bpd: Tensor | float, dims: int) -> Tensor | float:
    """Inverse of :func:`nll_to_bpd`: ``bpd · D ln 2`` nats per example."""
    _check_dims(dims)
    return bpd * (dims * LN2)


def flow_bits_per_dim(log_prob_w: Tensor, log_weight: Tensor, dims: int) -> Tensor:
    """The full path in one call: ``−(log p_flow(w) + log_weight) / (D ln 2)``, shape ``(B,)``."""
    if log_prob_w.shape != log_weight.shape:
        raise ValueError(
            f"flow_bits_per_dim: log_prob_w {tuple(log_prob_w.shape)} and log_weight "
            f"{tuple(log_weight.shape)} must have the same shape (B,)"
        )
    return bits_per_dim(log_prob_w + log_weight, dims)
