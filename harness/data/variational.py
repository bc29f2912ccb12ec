"""Variational dequantization: filled in at stage 2."""

from __future__ import annotations
