"""Benchmark and reproduction scripts (see docs/results/README.md)."""
