"""nfbench: a benchmarking harness for normalizing flows.

The package is layered (``docs/architecture.md``; the contracts in ``pyproject.toml``, checked
by ``lint-imports``, which also forbid every import cycle). At the bottom, ``flows`` and
``data`` (torch), ``measure``, and ``suite`` (no torch); ``job`` runs one job on one device;
``tracking`` is MLflow (no torch, no Ray); ``schedule`` is the driver (claims, workers, the
two phases, on a backend: Ray, inline or simulated); ``tune`` runs the studies on Ray Tune
above it; ``report`` reads the store (no torch, no Ray); ``app`` loads, checks, pre-flights,
plans and runs, and ``cli`` is the ``nfbench`` command on top of it.
"""

__version__ = "0.1.0"
