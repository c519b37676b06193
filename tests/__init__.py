"""Weir's pytest suite (``.venv/bin/python -m pytest``, or ``make test``).

A package, so that its shared code imports by name from the repository root, from pytest and
from the benchmarks alike: ``tests.support`` (servers and helpers the tests share) and
``tests.reference`` (the independent reference implementation of the processor). Benchmarks
import from here; nothing here imports from ``bench/``.
"""
