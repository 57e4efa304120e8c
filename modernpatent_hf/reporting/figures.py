"""Figures of the reports: drawn on ``matplotlib.figure.Figure`` objects and saved as PNG files atomically.

A ``Figure`` renders with the Agg backend without touching pyplot's global state: reports work headless
and inside other programs.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from ..io_utils import replace_atomically

DPI = 120


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure of this size (inches) at the reports' DPI, laid out without clipping; no pyplot state."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(figure: Figure, path: str) -> None:
    """Save ``figure`` as a PNG at ``path`` atomically."""
    replace_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
