"""Benchmarks: run as `python -m benchmarks.<area>`; results go to BENCHMARKS.md."""
