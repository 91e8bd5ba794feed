"""Benchmarks run from the repository root (`make bench-api`); not part of any installed package."""
