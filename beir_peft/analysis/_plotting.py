"""Shared plotting plumbing: matplotlib imported lazily, figures drawn on the Agg canvas, PNGs written atomically.

matplotlib is an optional dependency (``pip install "beir-peft[plots]"``). Figures are built with
``matplotlib.figure.Figure`` and the Agg canvas directly, never through ``pyplot``, so plotting neither
needs a display nor changes the backend of a program (or notebook) that imports this package.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..io import atomic_open

INSTALL_HINT = 'pip install "beir-peft[plots]"'


def require_matplotlib() -> None:
    """Raise :class:`ConfigError` (one line, with the install command) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from None


def new_figure(width: float, height: float) -> Any:
    """A ``Figure`` attached to an Agg canvas (no pyplot, no global backend switch)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: str | os.PathLike, dpi: int = 150) -> None:
    """Write ``figure`` as a PNG to ``path`` through :func:`beir_peft.io.atomic_open`."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi)
