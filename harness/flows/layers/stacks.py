"""Layer stacks shared by the coupling architectures (NICE, RealNVP, NSF coupling, Glow).

Vectors ``(D,)``: ``layers`` couplings over alternating halves (``mask="halves"``) or even/odd
entries (``mask="parity"``), optionally with a permutation between couplings (``permute``:
``none``, ``reverse``, ``random`` or ``lu`` — a learned LU linear map). With ``none`` the
couplings alternate which part they transform; with a permutation the permutation mixes.

Images ``(C, H, W)`` (RealNVP's multi-scale architecture): per level but the last,
``⌈L/2⌉`` checkerboard couplings, squeeze, ``⌊L/2⌋`` channel couplings (with the permutation
between them), factor out half the channels; the last level has ``L`` checkerboard couplings
(channel couplings where the image has a single pixel).

Glow (:func:`glow_layers`): steps of ActNorm → permutation (LU 1×1 convolution by default) →
affine coupling of channel halves; images squeeze first on every level.
"""

from __future__ import annotations

from harness.flows.base import Layer
from harness.flows.errors import HyperParameterError, check_choice
from harness.flows.layers.coupling import (
    MaskCoupling,
    NetFactory,
    SplitCoupling,
    checkerboard,
    parity_mask,
)
from harness.flows.layers.elementwise import Elementwise
from harness.flows.layers.linear import ActNorm, LULinear, Permutation
from harness.flows.layers.multiscale import multiscale

__all__ = ["MASKS", "PERMUTATIONS", "coupling_layers", "glow_layers", "permutation"]

MASKS = ("halves", "parity")
PERMUTATIONS = ("none", "reverse", "random", "lu")


def permutation(kind: str, channels: int) -> list[Layer]:
    """The permutation layer ``kind`` over ``channels`` (none: no layer)."""
    if kind == "reverse":
        return [Permutation.reverse(channels)]
    if kind == "random":
        return [Permutation.random(channels)]
    if kind == "lu":
        return [LULinear(channels)]
    return []


def _split(c: int, flip: bool, make_net: NetFactory, ew: Elementwise) -> SplitCoupling:
    return SplitCoupling((c // 2, c - c // 2), flip, make_net, ew)


def _channel_couplings(
    c: int, n: int, permute: str, make_net: NetFactory, ew: Elementwise
) -> list[Layer]:
    out: list[Layer] = []
    for k in range(n):
        if k and permute != "none":
            out += permutation(permute, c)
        out.append(_split(c, permute == "none" and k % 2 == 1, make_net, ew))
    return out


def coupling_layers(
    shape: tuple[int, ...],
    *,
    layers: int,
    mask: str,
    permute: str,
    levels: int,
    vector_net: NetFactory,
    image_net: NetFactory,
    ew: Elementwise,
) -> list[Layer]:
    """The coupling stack for ``shape`` (see the module doc)."""
    check_choice("mask", mask, MASKS)
    check_choice("permute", permute, PERMUTATIONS)
    if len(shape) == 1:
        (d,) = shape
        if d < 2:
            raise HyperParameterError("event_shape", f"couplings need D ≥ 2, got {d}")
        if mask == "halves":
            return _channel_couplings(d, layers, permute, vector_net, ew)
        out: list[Layer] = []
        for k in range(layers):
            if k and permute != "none":
                out += permutation(permute, d)
            odd = permute == "none" and k % 2 == 1
            out.append(MaskCoupling(parity_mask(d, odd), vector_net, ew))
        return out

    def boards(s: tuple[int, int, int], n: int) -> list[Layer]:
        if s[1] * s[2] == 1:
            if s[0] < 2:
                raise HyperParameterError("levels", f"nothing to couple at shape {s}")
            return _channel_couplings(s[0], n, permute, image_net, ew)
        return [MaskCoupling(checkerboard(s, k % 2 == 1), image_net, ew) for k in range(n)]

    return multiscale(
        shape,
        levels,
        before=lambda s: boards(s, (layers + 1) // 2),
        after=lambda s: _channel_couplings(s[0], layers // 2, permute, image_net, ew),
        last=lambda s: boards(s, layers),
    )


def glow_layers(
    shape: tuple[int, ...],
    *,
    layers: int,
    permute: str,
    levels: int,
    vector_net: NetFactory,
    image_net: NetFactory,
    ew: Elementwise,
) -> list[Layer]:
    """Glow steps (ActNorm → permutation → affine coupling), multi-scale on images."""
    check_choice("permute", permute, PERMUTATIONS[1:])

    def steps(c: int, make_net: NetFactory) -> list[Layer]:
        if c < 2:
            raise HyperParameterError("event_shape", f"Glow needs ≥ 2 channels, got {c}")
        out: list[Layer] = []
        for _ in range(layers):
            out += [ActNorm(c), *permutation(permute, c), _split(c, False, make_net, ew)]
        return out

    if len(shape) == 1:
        return steps(shape[0], vector_net)
    return multiscale(
        shape,
        levels,
        before=lambda s: [],
        after=lambda s: steps(s[0], image_net),
        last=lambda s: steps(s[0], image_net),
        squeeze_last=True,
    )
