"""Published figures to show beside nfbench's own, each with the paper and table it is from
(also listed in ``docs/protocols.md``, "Published figures").

Image data: test bits/dim, as compiled in Kobyzev, Prince & Brubaker, "Normalizing Flows: An
Introduction and Review of Current Methods", TPAMI 2020, Table 5. Tabular data: test
log-likelihood in nats from

- Papamakarios, Pavlakou & Murray, "Masked Autoregressive Flow for Density Estimation",
  NeurIPS 2017, Table 1 (Gaussian, RealNVP (10), MAF (5), MAF (10));
- Durkan, Bekasov, Murray & Papamakarios, "Neural Spline Flows", NeurIPS 2019, Table 1
  (RQ-NSF (C), RQ-NSF (AR), and its re-runs of Glow and MAF);
- Grathwohl et al., "FFJORD", ICLR 2019, Table 2,

stored here as NLL = −LL so that it reads like ``eval/nll``. The same model differs between
papers (MAF on GAS: 10.08 in the MAF paper, 12.35 in the NSF paper's re-run), so every figure
carries its source (author, year, table) and a leaderboard shows each matching row.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["PUBLISHED", "published_for", "published_table"]

_KOBYZEV = "Kobyzev et al. 2020, Table 5"
_MAF = "Papamakarios et al. 2017 (MAF), Table 1"
_NSF = "Durkan et al. 2019 (NSF), Table 1"
_FFJORD = "Grathwohl et al. 2019 (FFJORD), Table 2"

# (dataset, arch registry names, model as published, value, unit, source)
_IMAGES = {
    # model: (arch names, MNIST, CIFAR-10, ImageNet32, ImageNet64)
    "RealNVP": (("realnvp",), 1.06, 3.49, 4.28, 3.98),
    "Glow": (("glow",), 1.05, 3.35, 4.09, 3.81),
    "MAF": (("maf",), 1.89, 4.31, None, None),
    "FFJORD": (("ffjord",), 0.99, 3.40, None, None),
    "RQ-NSF (C)": (("nsf-coupling", "nsf"), None, 3.38, None, 3.82),
    "i-ResNet": (("iresnet", "i-resnet"), 1.06, 3.45, None, None),
    "Residual Flow": (("resflow", "residual-flow"), 0.97, 3.28, 4.01, 3.76),
}
_IMAGE_SETS = ("mnist", "cifar10", "imagenet32", "imagenet64")
_TABULAR = {
    # model: (arch names, source, POWER, GAS, HEPMASS, MINIBOONE, BSDS300) as log-likelihood
    "Gaussian": (("gaussian",), _MAF, -7.74, -3.58, -27.93, -37.24, 96.67),
    "RealNVP (10)": (("realnvp",), _MAF, 0.17, 8.33, -18.71, -13.84, 153.28),
    "MAF (5)": (("maf",), _MAF, 0.14, 9.07, -17.70, -11.75, 155.69),
    "MAF (10)": (("maf",), _MAF, 0.24, 10.08, -17.73, -12.24, 154.93),
    "Glow (re-run)": (("glow",), _NSF, 0.42, 12.24, -16.99, -10.55, 156.95),
    "MAF (re-run)": (("maf",), _NSF, 0.45, 12.35, -17.03, -10.92, 156.95),
    "FFJORD": (("ffjord",), _FFJORD, 0.46, 8.59, -14.92, -10.43, 157.40),
    "RQ-NSF (C)": (("nsf-coupling", "nsf"), _NSF, 0.64, 13.09, -14.75, -9.67, 157.54),
    "RQ-NSF (AR)": (("nsf-ar", "nsf-autoregressive"), _NSF, 0.66, 13.09, -14.01, -9.22, 157.31),
}
_TABULAR_SETS = ("power", "gas", "hepmass", "miniboone", "bsds300")
_ALIASES = {"cifar-10": "cifar10", "imagenet-32": "imagenet32", "imagenet-64": "imagenet64"}


def published_table() -> pd.DataFrame:
    """Every published figure: dataset, arch (registry name), model, value, unit, source."""
    rows = []
    for model, (archs, *values) in _IMAGES.items():
        for dataset, value in zip(_IMAGE_SETS, values):
            if value is not None:
                rows += [(dataset, a, model, value, "bpd", _KOBYZEV) for a in archs]
    for model, (archs, source, *values) in _TABULAR.items():
        for dataset, value in zip(_TABULAR_SETS, values):
            rows += [(dataset, a, model, -value, "nats", source) for a in archs]
    return pd.DataFrame(rows, columns=["dataset", "arch", "model", "value", "unit", "source"])


PUBLISHED = published_table()


def published_for(dataset: str, arch: str) -> pd.DataFrame:
    """The published rows for one data set and architecture (possibly none)."""
    name = dataset.lower()
    name = _ALIASES.get(name, name)
    hit = PUBLISHED[(PUBLISHED["dataset"] == name) & (PUBLISHED["arch"] == arch)]
    return hit.reset_index(drop=True)
