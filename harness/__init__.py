"""nfbench: a benchmarking harness for normalizing flows.

The package is layered (``docs/architecture.md``; the contracts in ``pyproject.toml``, checked
by ``lint-imports``): ``flows``, ``data`` → ``measure`` → ``suite`` (no torch) → ``job`` →
``tracking`` → ``schedule`` → ``report`` → ``cli``; a module imports only from the layers
before its own.
"""

__version__ = "0.1.0"
