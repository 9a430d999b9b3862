"""Training curves as a PNG (`curves.png` in the run directory), drawn with matplotlib's Agg backend.

One panel per metric; training series as a line over steps, validation series as points joined by a line. Losses
and other positive quantities that fall over decades (loss, NLL bounds, KL, perplexity, gradient norm) get a
logarithmic y axis. matplotlib is the optional extra `speechdraw[plot]`: without it, training runs as usual, writes
metrics.jsonl and prints one line saying that no PNG was drawn.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

# Metric names (substrings) plotted on a log y axis when all their values are positive.
LOG_SCALE = ("loss", "nll", "bound", "kl", "recon", "perplexity", "ppl", "grad_norm", "bits_per_dim")
# Row fields that are not curves: bookkeeping (the number of images a validation pass scored is not a curve).
NOT_METRICS = ("split", "time", "epoch", "images")

_warned = False


def collect_panels(records: list[dict], x_key: str = "step") -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{metric: {split: [(x, value), ...]}} from metric rows like {"step": 10, "split": "train", "loss": 1.2}."""
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in records:
        split = r.get("split", "train")
        for k, v in r.items():
            if k == x_key or k in NOT_METRICS or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            panels.setdefault(k, {}).setdefault(split, []).append((float(r.get(x_key, 0)), float(v)))
    return panels


def series_points(series: dict[str, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Every finite (x, value) of one panel, all splits together."""
    return [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]


def uses_log_scale(name: str, series: dict[str, list[tuple[float, float]]]) -> bool:
    ys = [y for _, y in series_points(series)]
    return any(key in name for key in LOG_SCALE) and bool(ys) and min(ys) > 0


def curves_figure(records: list[dict], x_key: str = "step"):
    """A matplotlib Figure (not attached to pyplot) with one panel per metric; None when there is nothing to plot."""
    from matplotlib import ticker
    from matplotlib.figure import Figure

    panels = collect_panels(records, x_key)
    if not panels:
        return None
    names = sorted(panels, key=lambda k: (k != "loss", k))  # the loss first, then alphabetical
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(6.0 * cols, 3.4 * rows), dpi=100, layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        series = panels[name]
        for split, pts in sorted(series.items()):
            pts = [(x, y) for x, y in pts if math.isfinite(y)]
            if not pts:
                continue
            xs, ys = zip(*pts)
            style = {"marker": "o", "markersize": 3} if split != "train" or len(pts) <= 50 else {}
            ax.plot(xs, ys, label=split, linewidth=1.4, **style)
        if uses_log_scale(name, series):
            ax.set_yscale("log")
            ys = [y for _, y in series_points(series)]
            lo, hi = min(ys), max(ys)
            margin = max((hi / lo) ** 0.05, 1.02)  # matplotlib pads a single point by decades: pad by 5% of the span
            ax.set_ylim(lo / margin, hi * margin)
            if hi / lo < 20:  # under ~1 decade the log locator would label one or two ticks: label plain values
                ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6))
                ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
                ax.yaxis.set_minor_formatter(ticker.NullFormatter())
            else:
                ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6))
        ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=8, integer=True))
        ax.set_title(f"{name} vs {x_key}" + (" (log scale)" if ax.get_yscale() == "log" else ""))
        ax.set_xlabel(x_key)
        ax.grid(True, which="major", alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", color="darkred")
        else:
            ax.legend(loc="best", fontsize="small")
    return fig


def plot_curves(records: list[dict], out_png: str | Path, *, x_key: str = "step") -> Path | None:
    """Write the curves of `records` to `out_png` (atomically); None if nothing to plot or matplotlib is missing."""
    global _warned
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        if not _warned:
            print("curves.png not drawn: matplotlib is not installed (pip install 'speechdraw[plot]')",
                  file=sys.stderr)
            _warned = True
        return None
    fig = curves_figure(records, x_key)
    if fig is None:
        return None
    FigureCanvasAgg(fig)
    out_png = Path(out_png)
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(out_png)
    return out_png
