"""Pareto-front scatter plots and labelled grids of images, drawn with Pillow only.

Drawing with Pillow (which ComfyUI already needs) keeps the pack free of a plotting dependency.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..sampling_math.pareto import default_reference, hypervolume, non_dominated

BACKGROUND = (255, 255, 255)
AXIS = (60, 60, 60)
GRID = (225, 225, 225)
DOMINATED = (150, 150, 150)
FRONT = (214, 39, 40)
REFERENCE = (31, 119, 180)


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


@dataclass
class FrontData:
    names: list[str]
    scores: torch.Tensor  # [P, M]
    labels: list[str]
    reference: torch.Tensor
    hypervolume: float

    @classmethod
    def from_report(cls, report: dict) -> FrontData:
        """An SRSoup report, or a RewardScore table ({"rewards", "scores"} without weights)."""
        scores = torch.tensor(report["scores"], dtype=torch.float64).reshape(len(report["scores"]), -1)
        weights = report.get("weights")
        labels = (
            ["/".join(f"{w:.2g}" for w in row) for row in weights]
            if weights
            else [f"#{i}" for i in range(len(scores))]
        )
        reference = report.get("reference_point")
        reference = (
            default_reference(scores) if reference is None else torch.tensor(reference, dtype=torch.float64)
        )
        volume = report.get("hypervolume")
        volume = hypervolume(scores, reference) if volume is None else float(volume)
        return cls(list(report["rewards"]), scores, labels, reference, volume)


class Panel:
    """One x/y scatter of two rewards inside a box of the canvas, with data-to-pixel mapping."""

    def __init__(self, box: tuple[int, int, int, int], xs: torch.Tensor, ys: torch.Tensor, margin: int = 60):
        self.left, self.top, self.right, self.bottom = box
        self.margin = margin
        self.x_range = padded_range(xs)
        self.y_range = padded_range(ys)

    def frame(self) -> tuple[int, int, int, int]:
        """The plotting area's left, top, right and bottom pixels (inside the axes)."""
        return self.left + self.margin, self.top + 20, self.right - 20, self.bottom - self.margin

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        x0, x1 = self.x_range
        y0, y1 = self.y_range
        width = self.right - self.left - self.margin - 20
        height = self.bottom - self.top - self.margin - 20
        px = self.left + self.margin + (x - x0) / (x1 - x0) * width
        py = self.bottom - self.margin - (y - y0) / (y1 - y0) * height
        return px, py


def padded_range(values: torch.Tensor) -> tuple[float, float]:
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.08 or max(abs(low) * 0.05, 1e-3)
    return low - pad, high + pad


def draw_axes(draw: ImageDraw.ImageDraw, panel: Panel, x_name: str, y_name: str, size: int) -> None:
    small = font(max(10, size // 48))
    for k in range(5):
        fx = panel.x_range[0] + (panel.x_range[1] - panel.x_range[0]) * k / 4
        fy = panel.y_range[0] + (panel.y_range[1] - panel.y_range[0]) * k / 4
        px, _ = panel.to_pixel(fx, panel.y_range[0])
        _, py = panel.to_pixel(panel.x_range[0], fy)
        draw.line([(px, panel.top + 20), (px, panel.bottom - panel.margin)], fill=GRID)
        draw.line([(panel.left + panel.margin, py), (panel.right - 20, py)], fill=GRID)
        draw.text((px, panel.bottom - panel.margin + 4), f"{fx:.3g}", fill=AXIS, font=small, anchor="ma")
        draw.text((panel.left + panel.margin - 4, py), f"{fy:.3g}", fill=AXIS, font=small, anchor="rm")
    draw.rectangle(list(panel.frame()), outline=AXIS)
    label = font(max(11, size // 40))
    draw.text(((panel.left + panel.right) / 2, panel.bottom - 18), x_name, fill=AXIS, font=label, anchor="mm")
    draw.text((panel.left + panel.margin, panel.top + 2), y_name, fill=AXIS, font=label, anchor="la")


def draw_front(draw, panel: Panel, data: FrontData, i: int, j: int, size: int, thumbnails, canvas) -> None:
    points = data.scores[:, [i, j]]
    front = sorted(non_dominated(points), key=lambda k: float(points[k, 0]))
    if len(front) > 1:
        draw.line(
            [panel.to_pixel(float(points[k, 0]), float(points[k, 1])) for k in front], fill=FRONT, width=2
        )
    radius = max(3, size // 120)
    label_font = font(max(9, size // 56))
    for k in range(len(points)):
        px, py = panel.to_pixel(float(points[k, 0]), float(points[k, 1]))
        if thumbnails is not None:
            paste_thumbnail(canvas, thumbnails[k], px, py, size // 12, panel.frame())
        colour = FRONT if k in front else DOMINATED
        draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=colour)
        draw.text((px + radius + 2, py + radius), data.labels[k], fill=AXIS, font=label_font, anchor="la")
    # The reference point usually lies below the plotted range: mark it at the clamped corner.
    rx, ry = panel.to_pixel(
        max(float(data.reference[i]), panel.x_range[0]), max(float(data.reference[j]), panel.y_range[0])
    )
    draw.text((rx, ry), "+ ref", fill=REFERENCE, font=label_font, anchor="lb")


def paste_thumbnail(
    canvas: Image.Image,
    image: torch.Tensor,
    px: float,
    py: float,
    side: int,
    frame: tuple[int, int, int, int],
) -> None:
    """Above-left of its point (the label goes below-right), kept inside the plotting area so that a
    point near an edge never covers the axes' numbers or names."""
    array = (image.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    thumb = Image.fromarray(array[..., :3]).resize((side, side))
    left, top, right, bottom = frame
    x = min(max(int(px - side - 4), left + 1), right - side - 1)
    y = min(max(int(py - side - 4), top + 1), bottom - side - 1)
    canvas.paste(thumb, (x, y))


def pareto_plot(data: FrontData, size: int = 768, thumbnails: torch.Tensor | None = None) -> Image.Image:
    """Two rewards: one scatter. Three or more: a matrix of pairwise scatters."""
    pairs = list(itertools.combinations(range(len(data.names)), 2)) or [(0, 0)]
    columns = 1 if len(pairs) == 1 else min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    legend_height = 70
    canvas = Image.new("RGB", (size * columns, size * rows + legend_height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for index, (i, j) in enumerate(pairs):
        left, top = (index % columns) * size, legend_height + (index // columns) * size
        panel = Panel((left, top, left + size, top + size), data.scores[:, i], data.scores[:, j])
        draw_axes(draw, panel, data.names[i], data.names[j], size)
        draw_front(draw, panel, data, i, j, size, thumbnails, canvas)
    reference = ", ".join(f"{v:.4g}" for v in data.reference.tolist())
    legend = font(max(12, size // 36))
    draw.text(
        (12, 10), f"Pareto front of {len(data.scores)} images (red: non-dominated)", fill=AXIS, font=legend
    )
    draw.text(
        (12, 38),
        f"hypervolume {data.hypervolume:.4g}   reference point ({reference})",
        fill=REFERENCE,
        font=legend,
    )
    return canvas


def labelled_grid(images: torch.Tensor, labels: list[str], columns: int | None = None) -> Image.Image:
    """The images in a grid, each captioned (e.g. with its weight row)."""
    count, height, width = images.shape[0], images.shape[1], images.shape[2]
    columns = columns or min(count, 6)
    rows = -(-count // columns)
    caption = max(18, height // 10)
    canvas = Image.new("RGB", (columns * width, rows * (height + caption)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    text_font = font(max(10, caption - 6))
    for k in range(count):
        x, y = (k % columns) * width, (k // columns) * (height + caption)
        array = (images[k].clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
        canvas.paste(Image.fromarray(array[..., :3]), (x, y))
        draw.text(
            (x + width / 2, y + height + caption / 2),
            labels[k] if k < len(labels) else "",
            fill=AXIS,
            font=text_font,
            anchor="mm",
        )
    return canvas


def to_comfy_image(picture: Image.Image) -> torch.Tensor:
    """A PIL picture as a ComfyUI IMAGE batch of one: [1, H, W, 3] floats in [0, 1]."""
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0).unsqueeze(0)
