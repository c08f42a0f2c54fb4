"""Benchmarks: `python -m bench.run` (see README.md and bench/RESULTS.md)."""
