"""Figures and images as data URIs, so that the report is one file that fetches nothing.

Figures are plain :class:`matplotlib.figure.Figure` objects, never pyplot's: saving one
renders it with the Agg (PNG) or SVG backend, without a display and without touching the
global backend of a program that imports dcframe.
"""

from __future__ import annotations

import base64
import io

import matplotlib
from matplotlib.figure import Figure
from PIL import Image


def _uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def svg_uri(figure: Figure) -> str:
    """A line or bar chart as a base64 SVG data URI."""
    buffer = io.BytesIO()
    # Text stays text (small, selectable); fixed ids and no date: the same run, the same file.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dcframe-report"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return _uri("image/svg+xml", buffer.getvalue())


def png_uri(figure: Figure, dpi: int = 100) -> str:
    """A figure of many pixels (heatmaps, image grids) as a base64 PNG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return _uri("image/png", buffer.getvalue())


def thumbnail_uri(image: Image.Image, side: int) -> str:
    """``image`` fitted into a ``side`` x ``side`` square as a PNG data URI; small images are
    enlarged with visible pixels rather than blurred."""
    image = image.convert("RGB")
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    buffer = io.BytesIO()
    image.resize(size, resample).save(buffer, format="PNG", optimize=True)
    return _uri("image/png", buffer.getvalue())
