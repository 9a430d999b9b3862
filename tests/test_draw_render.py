"""Pictures: the PNG grid's size, the canvas GIF with one frame per glimpse and the write box on each, reconstruction
frames, per-glimpse PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from draw_fixtures import calm_model, tiny_config
from PIL import Image

from speechdraw.draw import render
from speechdraw.draw.attention import Window
from speechdraw.draw.sample import sample_by_label


def red_mask(im: Image.Image) -> np.ndarray:
    a = np.asarray(im.convert("RGB")).astype(int)
    return (a[..., 0] > 200) & (a[..., 1] < 80) & (a[..., 2] < 80)


def test_png_grid_has_the_right_size_and_pixels(tmp_path):
    images = torch.zeros(64, 1, 28, 28)
    images[5] = 1.0
    path = render.save_grid(images, tmp_path / "grid.png", pad=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (8 * 30 + 2, 8 * 30 + 2)
        a = np.asarray(im.convert("RGB"))
    # tile 5 is row 0, column 5: its pixels are white, tile 4's are black
    assert (a[2:30, 2 + 5 * 30: 2 + 5 * 30 + 28] == 255).all()
    assert (a[2:30, 2 + 4 * 30: 2 + 4 * 30 + 28] == 0).all()
    colour = render.grid(torch.rand(10, 3, 8, 6), nrow=4, pad=1, scale=3)
    assert colour.size == render.grid_size(10, 8, 6, nrow=4, pad=1, scale=3) == (4 * 19 + 1, 3 * 25 + 1)


def test_write_box_is_drawn_where_the_window_is():
    im = render.grid(torch.zeros(1, 1, 20, 20), pad=0, scale=2)
    # 4 x 4 grid, stride 2, centred on (10.5, 10.5): covers pixels 7..14 (1-indexed), half a stride beyond the
    # outermost filter means 7.5 and 13.5
    win = Window(*(torch.tensor([v]) for v in (10.5, 10.5, 2.0, 1.0, 1.0)))
    render.draw_boxes(im, win, n=4, height=20, width=20, pad=0, scale=2)
    cols = np.nonzero(red_mask(im).any(0))[0]
    assert cols.min() == round((6.5 - 0.5) * 2) and cols.max() == round((14.5 - 0.5) * 2)


def test_canvas_gif_has_one_frame_per_glimpse_each_with_a_write_box(tmp_path):
    cfg = tiny_config(steps=7)
    trace = calm_model(cfg).generate(9, generator=torch.Generator().manual_seed(0))
    frames = render.canvas_frames(trace.canvases, trace.write, n=cfg.write_n, scale=3)
    path = render.save_gif(frames, tmp_path / "canvas.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == cfg.steps
        assert gif.size == (render.grid_size(9, 12, 12, pad=2, scale=3)[0],
                            render.grid_size(9, 12, 12, pad=2, scale=3)[1] + render.CAPTION_HEIGHT)
        for t in range(gif.n_frames):
            gif.seek(t)
            assert red_mask(gif).sum() > 9 * 4  # at least one small box per tile
    paths = render.save_frames(frames, tmp_path / "frames")
    assert [p.name for p in paths] == [f"glimpse_{t:03d}.png" for t in range(1, 8)]


def test_reconstruction_frames_show_the_real_images_with_read_boxes(tmp_path):
    cfg = tiny_config(steps=5)
    model = calm_model(cfg)
    x = (torch.rand(4, 1, 12, 12) < 0.3).float()
    trace = model.reconstruct(x)
    frames = render.reconstruction_frames(x, trace.canvases, trace.read, trace.write, cfg.read_n, cfg.write_n,
                                          scale=2)
    assert len(frames) == 5
    left_w = render.grid_size(4, 12, 12, pad=2, scale=2)[0]
    assert frames[0].width == 2 * left_w
    a = np.asarray(frames[0]).astype(int)
    green = (a[..., 1] > 200) & (a[..., 0] < 80)
    assert green[:, :left_w].sum() > 0 and green[:, left_w:].sum() == 0
    assert red_mask(frames[0])[:, left_w:].sum() > 0
    render.save_gif(frames, tmp_path / "recon.gif")
    with Image.open(tmp_path / "recon.gif") as gif:
        assert gif.n_frames == 5


def test_per_label_grid_has_a_row_per_class_drawn_from_the_same_noise(tmp_path):
    cfg = tiny_config(num_classes=3)
    model = calm_model(cfg).eval()
    out = sample_by_label(model, 4, seed=7, out_dir=tmp_path, scale=2)
    assert out.images.shape == (12, 1, 12, 12)
    with Image.open(out.files["png"]) as im:
        assert im.size == render.grid_size(12, 12, 12, nrow=4, pad=2, scale=2)
    for y in range(3):  # row y: label y under the seed's noise, exactly
        alone = model.generate(4, labels=torch.full((4,), y), generator=torch.Generator().manual_seed(7)).images
        assert torch.equal(out.images[4 * y:4 * (y + 1)], alone)
    assert not torch.allclose(out.images[:4], out.images[4:8])  # the label changes the drawing
    with pytest.raises(ValueError, match="not class-conditional"):
        sample_by_label(calm_model(tiny_config()), 4)
