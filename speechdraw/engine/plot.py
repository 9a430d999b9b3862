"""Training curves as a PNG, drawn with Pillow (no plotting dependency).

One panel per metric; training series as a line over steps, validation series as points joined by a line.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def _nice(v: float) -> str:
    if v == 0 or (1e-3 <= abs(v) < 1e5):
        return f"{v:.4g}"
    return f"{v:.2e}"


def _panel(draw: ImageDraw.ImageDraw, box, title: str, series: dict[str, list[tuple[float, float]]], font) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 4, y0 - 14), title, fill=(0, 0, 0), font=font)
    pts = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not pts:
        draw.text((x0 + 10, y0 + 10), "no finite values", fill=(120, 0, 0), font=font)
        return
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)
    if xmax == xmin:
        xmax = xmin + 1
    if ymax == ymin:
        ymax, ymin = ymax + abs(ymax) * 0.05 + 1e-9, ymin - abs(ymin) * 0.05 - 1e-9
    pad = 6

    def to_px(x, y):
        return (x0 + pad + (x - xmin) / (xmax - xmin) * (x1 - x0 - 2 * pad),
                y1 - pad - (y - ymin) / (ymax - ymin) * (y1 - y0 - 2 * pad))

    for frac in (0.0, 0.5, 1.0):  # y ticks
        y = ymin + frac * (ymax - ymin)
        _, py = to_px(xmin, y)
        draw.line([(x0, py), (x0 + 4, py)], fill=(0, 0, 0))
        draw.text((x0 - 58, py - 6), _nice(y), fill=(0, 0, 0), font=font)
    draw.text((x0, y1 + 3), _nice(xmin), fill=(0, 0, 0), font=font)
    draw.text((x1 - 40, y1 + 3), _nice(xmax), fill=(0, 0, 0), font=font)
    for i, (name, s) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        px = [to_px(x, y) for x, y in s if math.isfinite(y)]
        if len(px) > 1:
            draw.line(px, fill=color, width=2)
        if len(px) <= 50:
            for cx, cy in px:
                draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=color)
        draw.text((x1 - 150, y0 + 4 + 12 * i), name, fill=color, font=font)


def plot_curves(records: list[dict], out_png: str | Path, *, x_key: str = "step") -> Path | None:
    """records: metric rows like {"step": 10, "split": "train", "loss": 1.2, ...}. One panel per metric name."""
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in records:
        split = r.get("split", "train")
        for k, v in r.items():
            if k in (x_key, "split", "time", "epoch") or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            panels.setdefault(k, {}).setdefault(split, []).append((float(r.get(x_key, 0)), float(v)))
    if not panels:
        return None
    names = sorted(panels, key=lambda k: (k != "loss", k))
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / cols)
    pw, ph, ml, mt = 420, 220, 70, 30
    img = Image.new("RGB", (cols * (pw + ml) + 10, rows * (ph + mt + 20) + 10), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i, name in enumerate(names):
        r, c = divmod(i, cols)
        x0, y0 = ml + c * (pw + ml), mt + r * (ph + mt + 20)
        _panel(draw, (x0, y0, x0 + pw - 10, y0 + ph), f"{name} vs {x_key}", panels[name], font)
    out_png = Path(out_png)
    tmp = out_png.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(out_png)
    return out_png
