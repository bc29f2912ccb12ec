"""nfbench's data layer: data sets, preprocessing, dequantization, bits per dimension.

Example:
    >>> from harness import data
    >>> ds = data.load("digits", seed=0)
    >>> deq = data.make_dequantizer("uniform", ds)
    >>> w, log_weight = deq(ds.test[:4])
    >>> tuple(w.shape), tuple(log_weight.shape), deq.dims
    ((4, 1, 8, 8), (4,), 64)
"""

from __future__ import annotations

from .bpd import bits_per_dim, flow_bits_per_dim, nll_to_bpd
from .dataset import DataSet, entry, load, names, resolve_data_dir
from .dequantize import Dequantizer, compatible, make_dequantizer, schemes
from .errors import DataError

__all__ = [
    "DataError",
    "DataSet",
    "Dequantizer",
    "bits_per_dim",
    "compatible",
    "entry",
    "flow_bits_per_dim",
    "load",
    "make_dequantizer",
    "names",
    "nll_to_bpd",
    "resolve_data_dir",
    "schemes",
]
