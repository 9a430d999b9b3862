"""speechdraw/engine/plot.py: curves.png is a real PNG drawn with matplotlib, one panel per metric, titles with spaces,
log scale for losses, enough ticks to read; training still runs (no PNG, one line) without matplotlib."""

from __future__ import annotations

import builtins
import importlib.util
import math

import pytest
from PIL import Image

from speechdraw.engine import plot

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib (extra speechdraw[plot]) not installed")


def records() -> list[dict]:
    rows = []
    for step in range(10, 610, 10):  # a loss falling over two decades, a learning rate, a validation error
        rows.append({"step": step, "split": "train", "time": 1.0 * step, "epoch": step // 100,
                     "loss": 4.0 * math.exp(-step / 120), "lr": 1e-3, "grad_norm": 2.0 / (1 + step / 50)})
        if step % 100 == 0:
            rows.append({"step": step, "split": "val", "epoch": step // 100, "cer": 1.0 - step / 700,
                         "images": 2000, "bound": 150.0 - step / 10})
    return rows


@needs_matplotlib
def test_png_is_written_and_is_a_real_png(tmp_path):
    out = plot.plot_curves(records(), tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        im.load()
        w, h = im.size
        colours = len(im.convert("RGB").getcolors(maxcolors=1 << 20))
    # 5 metrics -> 2 columns x 3 rows of ~600 x 340 px panels
    assert 1000 <= w <= 1400 and 900 <= h <= 1200
    assert colours > 20  # lines, text and grid were drawn, not a blank canvas
    assert not list(tmp_path.glob("*.tmp.png"))  # written atomically, no temp file left


@needs_matplotlib
def test_one_panel_per_metric_with_spaced_titles_and_log_losses():
    fig = plot.curves_figure(records())
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert set(axes) == {"loss vs step (log scale)", "grad_norm vs step (log scale)", "bound vs step (log scale)",
                         "cer vs step", "lr vs step"}  # "images" is bookkeeping, not a curve
    assert fig.axes[0].get_title().startswith("loss")  # the loss comes first
    assert axes["loss vs step (log scale)"].get_yscale() == "log"
    assert axes["cer vs step"].get_yscale() == "linear"
    for title, ax in axes.items():
        lo, hi = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert len(ticks) >= 3 and len(labels) >= 3, title  # readable ticks, not just the two ends
        assert len([t for t in ax.get_xticks() if 10 <= t <= 600]) >= 4, title
    # a narrow log range (bound 90..140) is labelled with plain numbers, not only the one power of ten inside
    assert any(lab.get_text() in ("100", "120", "140") for lab in axes["bound vs step (log scale)"].get_yticklabels())


@needs_matplotlib
def test_negative_loss_stays_linear():
    rows = [{"step": s, "loss": -1.0 + s} for s in range(5)]
    assert plot.curves_figure(rows).axes[0].get_yscale() == "linear"


def test_without_matplotlib_no_png_and_one_line(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.setattr(plot, "_warned", False)
    assert plot.plot_curves(records(), tmp_path / "curves.png") is None
    assert plot.plot_curves(records(), tmp_path / "curves.png") is None
    assert not (tmp_path / "curves.png").exists()
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1
