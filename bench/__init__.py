"""Benchmarks: each prints its figures beside a baseline measured in the same run.

Run a bench from the repository root, e.g. ``python -m bench.locate_accuracy``.
"""
