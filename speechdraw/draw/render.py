"""Pictures of DRAW at work, with pillow only: sample grids, the canvas glimpse by glimpse with the attention box on
every frame (animated GIF or one PNG per glimpse), and reconstructions that show where the model read.

Images are tensors (N, C, H, W) in [0, 1] with C = 1 or 3; windows are attention.Window with (T, N) fields in the
paper's 1-indexed pixel coordinates, as Draw.generate / Draw.reconstruct return them. A tile shows an image enlarged
`scale` times; pixel coordinate a (1-indexed) is the centre of enlarged pixel a - 1, at (a - 0.5) * scale.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from speechdraw.draw.attention import Window

WRITE_COLOR = (255, 40, 40)  # write window: red
READ_COLOR = (40, 220, 40)  # read window: green
BACKGROUND = (40, 40, 40)  # padding between tiles
CAPTION_HEIGHT = 12


def _layout(num: int, nrow: int | None) -> tuple[int, int]:
    """(rows, columns) for num tiles; nrow is the number of tiles per row (default: a square-ish grid)."""
    cols = nrow or max(1, math.ceil(math.sqrt(num)))
    return math.ceil(num / cols), cols


def grid_size(num: int, height: int, width: int, nrow: int | None = None, pad: int = 2,
              scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of the grid `grid` draws."""
    rows, cols = _layout(num, nrow)
    return cols * (width * scale + pad) + pad, rows * (height * scale + pad) + pad


def _tile_origin(i: int, cols: int, height: int, width: int, pad: int, scale: int) -> tuple[int, int]:
    r, c = divmod(i, cols)
    return pad + c * (width * scale + pad), pad + r * (height * scale + pad)


def grid(images: Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """(N, C, H, W) in [0, 1] -> one RGB image with the N images as tiles, nrow per row, `pad` pixels apart."""
    images = torch.as_tensor(images).detach().float().cpu()
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    rows, cols = _layout(n, nrow)
    tiles = (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    if c == 1:
        tiles = tiles.expand(n, 3, h, w)
    tiles = tiles.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    gw, gh = grid_size(n, h, w, nrow, pad, scale)
    canvas = np.empty((gh, gw, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    for i in range(n):
        x0, y0 = _tile_origin(i, cols, h, w, pad, scale)
        canvas[y0:y0 + h * scale, x0:x0 + w * scale] = tiles[i]
    return Image.fromarray(canvas, "RGB")


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, pad: int = 2,
              scale: int = 1) -> Path:
    """Write grid(images) as a PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(images, nrow, pad, scale).save(path, format="PNG")
    return path


def draw_boxes(im: Image.Image, window: Window, n: int, height: int, width: int, nrow: int | None = None,
               pad: int = 2, scale: int = 1, color: tuple[int, int, int] = WRITE_COLOR) -> Image.Image:
    """Outline, on each tile of a grid drawn by grid(), the area an N x N attention grid covers (N strides wide,
    centred on (gX, gY)); window fields are (N_images,). Boxes are clipped to their tile."""
    draw = ImageDraw.Draw(im)
    num = window.gx.shape[0]
    _, cols = _layout(num, nrow)
    x_lo, y_lo, x_hi, y_hi = (t.detach().float().cpu().tolist() for t in window.box(n))
    for i in range(num):
        ox, oy = _tile_origin(i, cols, height, width, pad, scale)

        def px(a: float, length: int, origin: int) -> int:
            return origin + int(round(min(max((a - 0.5) * scale, 0), length * scale - 1)))

        box = [px(x_lo[i], width, ox), px(y_lo[i], height, oy), px(x_hi[i], width, ox), px(y_hi[i], height, oy)]
        draw.rectangle(box, outline=color, width=1)
    return im


def _caption(im: Image.Image, text: str) -> Image.Image:
    """im with a strip of text underneath (also makes consecutive GIF frames distinct, so none is merged away)."""
    out = Image.new("RGB", (im.width, im.height + CAPTION_HEIGHT), BACKGROUND)
    out.paste(im, (0, 0))
    ImageDraw.Draw(out).text((2, im.height), text, fill=(230, 230, 230))
    return out


def canvas_frames(canvases: Tensor, windows: Window | None = None, n: int = 0, nrow: int | None = None,
                  scale: int = 3, pad: int = 2, color: tuple[int, int, int] = WRITE_COLOR) -> list[Image.Image]:
    """One frame per glimpse: canvases (T, N, C, H, W) as a grid, each tile with its write window (fields (T, N),
    grid size n) outlined when given. Returns T RGB images."""
    steps, num, _, h, w = canvases.shape
    frames = []
    for t in range(steps):
        im = grid(canvases[t], nrow, pad, scale)
        if windows is not None:
            draw_boxes(im, Window(*(f[t] for f in windows)), n, h, w, nrow, pad, scale, color)
        frames.append(_caption(im, f"glimpse {t + 1}/{steps}"))
    return frames


def reconstruction_frames(images: Tensor, canvases: Tensor, read: Window | None, write: Window | None,
                          read_n: int, write_n: int, nrow: int | None = None, scale: int = 3,
                          pad: int = 2) -> list[Image.Image]:
    """One frame per glimpse for a reconstruction: on the left the real images (N, C, H, W) with the read window of
    glimpse t (green), on the right the canvas after glimpse t with its write window (red). Returns T RGB images."""
    steps, num, _, h, w = canvases.shape
    frames = []
    for t in range(steps):
        left = grid(images, nrow, pad, scale)
        if read is not None:
            draw_boxes(left, Window(*(f[t] for f in read)), read_n, h, w, nrow, pad, scale, READ_COLOR)
        right = grid(canvases[t], nrow, pad, scale)
        if write is not None:
            draw_boxes(right, Window(*(f[t] for f in write)), write_n, h, w, nrow, pad, scale, WRITE_COLOR)
        both = Image.new("RGB", (left.width + right.width, left.height), BACKGROUND)
        both.paste(left, (0, 0))
        both.paste(right, (left.width, 0))
        frames.append(_caption(both, f"glimpse {t + 1}/{steps}: read (left), canvas and write (right)"))
    return frames


def save_gif(frames: list[Image.Image], path: str | os.PathLike, duration_ms: int = 80,
             last_ms: int = 1500) -> Path:
    """Write frames as an animated GIF that loops, holding the last frame for last_ms; returns the path."""
    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration_ms] * (len(frames) - 1) + [last_ms]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   optimize=False, disposal=1)
    return path


def save_frames(frames: list[Image.Image], out_dir: str | os.PathLike, prefix: str = "glimpse") -> list[Path]:
    """Write frame t as out_dir/<prefix>_<t:03d>.png (t from 1); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, im in enumerate(frames, start=1):
        p = out_dir / f"{prefix}_{t:03d}.png"
        im.save(p, format="PNG")
        paths.append(p)
    return paths
