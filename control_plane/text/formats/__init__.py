"""Document formats (issue 12): files in, structural units out, the file back in.

``FORMATS`` maps a format name to its module's ``FORMAT`` object (``base.DocumentFormat``);
``by_extension`` picks one from a file name. ``translate_document`` runs a file through
any engine call synchronously (the CLI, tests, benchmarks); the service plans the same
units into chunks (``control_plane.jobs.planner``) and rebuilds the file when the job
completes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import PurePath

from control_plane.engine.base import Translation
from control_plane.text.formats.base import DocumentFormat, Options, Unit

log = logging.getLogger(__name__)
_broken: set[str] = set()

__all__ = ["DocumentFormat", "Options", "Unit", "get", "by_extension", "names"]

# name -> module under control_plane.text.formats; a module that is not written yet (or
# whose library is missing) is simply not offered
_MODULES = {
    "po": "po",
    "xliff": "xliff",
    "markdown": "markdown",
    "srt": "subtitles",
    "vtt": "subtitles",
    "docx": "docx",
    "text": "plain",
}


def get(name: str) -> DocumentFormat:
    """The format called ``name``; ValueError naming the known ones otherwise."""
    module = _MODULES.get(name)
    if module is None:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(names())}")
    mod = importlib.import_module(f"control_plane.text.formats.{module}")
    found = getattr(mod, "FORMATS", {}).get(name) or mod.FORMAT
    return found


def names() -> list[str]:
    """The formats offered: those whose module (and its parser library) loads. A module
    that fails to load is logged once and left out; the others still work."""
    out = []
    for name, module in _MODULES.items():
        try:
            importlib.import_module(f"control_plane.text.formats.{module}")
        except Exception as exc:  # noqa: BLE001 - one broken format must not break all
            if module not in _broken:
                _broken.add(module)
                log.warning("format %s unavailable: %r", name, exc)
            continue
        out.append(name)
    return out


def by_extension(filename: str) -> DocumentFormat | None:
    """The format of a file name's extension (``notes.po`` -> po), or None."""
    suffix = PurePath(filename).suffix.lower()
    for name in names():
        fmt = get(name)
        if suffix in fmt.extensions:
            return fmt
    return None


def translate_document(
    data: bytes,
    fmt: DocumentFormat,
    translate: Callable[[list[str]], list[Translation]],
    options: Options,
    protection=None,  # noqa: ANN001 - a spans.Protection; its format is the document's
) -> bytes:
    """Extract, translate every unit sentence by sentence with its spans protected, and
    rebuild: what a document job does, in one call."""
    from dataclasses import replace

    from control_plane.text.formats.units import plan_units, render_units
    from control_plane.text.protect import run_sync
    from control_plane.text.spans import Protection

    units = fmt.extract(data)
    protection = replace(protection or Protection(), format=fmt.markup)
    layouts = plan_units(units, fmt.markup, options.source_lang)
    segments = [s for layout in layouts for s in layout.segments]
    out = [t.text for t in run_sync(segments, protection, translate)]
    # rebuild re-fills wrapped paragraphs: with the protection, never inside a span
    options = replace(options, extra={**options.extra, "protection": protection})
    return fmt.rebuild(data, render_units(layouts, out), options)
