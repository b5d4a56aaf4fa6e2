"""``dashboards`` is a folder at the repository root, not an installed package (pyproject's
packages.find lists control_plane, export, devstack, evaluation): put the root on sys.path
for these tests (--import-mode=importlib does not)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[3])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
