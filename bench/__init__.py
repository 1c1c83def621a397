"""Benchmarks that print tables; run them with `python -m bench.<name>`, never as part of pytest."""

from __future__ import annotations
