"""Import layers: the web package sits on top, the engine at the bottom, and the exporter
beside the engine. A module below the API that imported it (or an engine module that
imported the exporter) would tie packages together that must deploy and test apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BELOW_API = ("jobs", "queue", "workers", "inference", "engine", "text")
# text handling (spans, markup, chunking) is pure: it may use the engine's Translation
# type and nothing else of the control plane, so jobs, workers and the CLI all build on it
TEXT_MAY_IMPORT = ("control_plane.text", "control_plane.engine.base")


def imported_modules(path: Path, package: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved, imports
    inside functions included)."""
    package = package or ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def modules_of(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / "control_plane" / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", modules_of(*BELOW_API), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_below_the_api_imports_it(path):
    bad = sorted(
        m
        for m in imported_modules(path)
        if m == "control_plane.api" or m.startswith("control_plane.api.")
    )
    assert not bad, f"{path.relative_to(ROOT)} imports the web layer: {bad}"


@pytest.mark.parametrize("path", modules_of("engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_does_not_import_the_exporter(path):
    bad = sorted(m for m in imported_modules(path) if m == "export" or m.startswith("export."))
    assert not bad, f"{path.relative_to(ROOT)} imports the exporter: {bad}"


@pytest.mark.parametrize("path", modules_of("text"), ids=lambda p: str(p.relative_to(ROOT)))
def test_text_handling_stands_alone(path):
    bad = sorted(
        m
        for m in imported_modules(path)
        if m.startswith("control_plane")
        and m != "control_plane"
        and not any(m == ok or m.startswith(ok + ".") for ok in TEXT_MAY_IMPORT)
    )
    assert not bad, f"{path.relative_to(ROOT)} imports above the text layer: {bad}"


def test_the_checker_sees_relative_and_nested_imports(tmp_path):
    """The check itself must be able to fail."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..api import protocol\n    import export.bergamot\n")
    names = imported_modules(probe, "control_plane.jobs")
    assert "control_plane.api" in names and "control_plane.api.protocol" in names
    assert "export.bergamot" in names


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tests").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_tests_do_not_import_the_benchmarks(path):
    """Evaluation data and scoring live in ``evaluation/``, shared by tests and bench;
    a test that imported bench code would break when a benchmark changes."""
    bad = sorted(
        m for m in imported_modules(path, "tests") if m == "bench" or m.startswith("bench.")
    )
    assert not bad, f"{path.relative_to(ROOT)} imports benchmark code: {bad}"
