"""nfbench: a benchmarking harness for normalizing flows.

The package is layered (see ``DESIGN.md`` in the shared folder and the README):
``flows`` → ``data`` → ``measure`` → ``job`` → ``suite`` / ``tracking`` → ``schedule`` →
``report`` → ``cli``; imports only point at layers listed before a module's own.
"""

__version__ = "0.1.0"
