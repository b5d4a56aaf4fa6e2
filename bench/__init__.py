"""Benchmarks and evaluation: ``python -m bench`` (``make bench``)."""
