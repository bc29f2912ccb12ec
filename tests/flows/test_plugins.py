"""The plugin door: a real installed distribution's ``nfbench.flows`` entry points.

Each test writes a package and its ``*.dist-info`` (METADATA + entry_points.txt) into a temporary
directory on ``sys.path``, which is exactly what ``pip install`` leaves behind, so
``importlib.metadata`` finds it without any monkeypatching.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from harness import flows
from harness.flows import zoo

PLUGIN_SRC = '''
"""A third-party flow package."""
import math
import torch
from harness.flows import Flow, Layer, register


class Scale(Layer):
    def __init__(self, factor):
        super().__init__()
        self.log_factor = torch.nn.Parameter(torch.tensor(math.log(factor)))

    def forward(self, x, context=None, with_log_det=True):
        ld = (self.log_factor * x[0].numel()).expand(x.shape[0]) if with_log_det else None
        return x * self.log_factor.exp(), self._keep(ld)

    def inverse(self, y, context=None):
        return y * torch.exp(-self.log_factor)


def scaled(event_shape, context_dim, *, factor: float = 2.0):
    """Scale every entry by a learned factor."""
    return Flow([Scale(factor)], event_shape, context_dim)


scaled.images = True


@register("tp-registered", "registers itself on import")
def registered(event_shape, context_dim, *, factor: float = 0.5):
    return Flow([Scale(factor)], event_shape, context_dim)
'''


def _install(root: Path, dist: str, entry_points: str, modules: dict[str, str]) -> None:
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, src in modules.items():
        (root / f"{name}.py").write_text(src)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(zoo.REGISTRY.names())
    yield tmp_path
    for name in set(zoo.REGISTRY.names()) - before:
        zoo.REGISTRY._entries.pop(name)
    zoo._plugin_errors.clear()
    for mod in ("nfbench_tp", "nfbench_broken"):
        sys.modules.pop(mod, None)


def test_an_installed_plugin_registers_and_runs(site: Path) -> None:
    _install(
        site,
        "nfbench_tp",
        """
        [nfbench.flows]
        tp-scaled = nfbench_tp:scaled
        tp-module = nfbench_tp
        """,
        {"nfbench_tp": PLUGIN_SRC},
    )
    added = zoo.load_plugins(force=True)
    assert {"tp-scaled", "tp-registered"} <= set(added)
    assert {"tp-scaled", "tp-registered"} <= set(flows.names())
    e = flows.entry("tp-scaled")
    assert e.summary == "Scale every entry by a learned factor."
    assert e.meta["images"] is True and e.meta["plugin"] == "nfbench_tp:scaled"
    assert flows.hparams("tp-scaled") == {"factor": 2.0}
    flow = flows.build("tp-scaled", (1, 4, 4), factor=3.0)
    x = torch.randn(2, 1, 4, 4)
    z, ld = flow.transform(x)
    assert torch.allclose(z, 3 * x) and torch.allclose(
        ld, torch.full((2,), 16 * 1.0986), atol=1e-3
    )
    assert flows.preflight("tp-scaled", 3, {"factor": 1.5}).ok
    with pytest.raises(ValueError, match="'tp-scaled'.*'facter'.*factor=2.0"):
        flows.build("tp-scaled", 3, facter=1.0)
    # a plugin's hyper-parameter without a spec is checked by its default's type
    with pytest.raises(ValueError, match="'tp-scaled'.*'factor'.*must be a finite number"):
        flows.build("tp-scaled", 3, factor="big")


def test_a_broken_plugin_is_skipped_with_a_warning(site: Path) -> None:
    _install(
        site,
        "nfbench_broken",
        """
        [nfbench.flows]
        bad-import = nfbench_broken:factory
        """,
        {"nfbench_broken": "raise ImportError('missing dependency: fancylib')\n"},
    )
    with pytest.warns(RuntimeWarning, match="bad-import.*fancylib"):
        zoo.load_plugins(force=True)
    assert "bad-import" not in flows.names() and "realnvp" in flows.names()
    assert "fancylib" in zoo.plugin_errors()["bad-import"]
