"""`speechdraw sample`: pictures from a trained DRAW release, as the drawing unfolds.

    speechdraw sample --model RUN/release --num 64 --out DIR                      # DIR/samples.png
    speechdraw sample --model RUN/release --out DIR --gif --show-attention        # + DIR/samples.gif, write boxes
    speechdraw sample --model RUN/release --out DIR --frames                      # + DIR/frames/glimpse_001.png ...
    speechdraw sample --model RUN/release --out DIR --reconstruct test:16 --gif --show-attention
    speechdraw sample --model RUN/release --out DIR --reconstruct digit.png more_digits/
    speechdraw sample --model RUN/release --out DIR --label 7                     # class-conditional models only

Samples come from the prior (z_t ~ N(0, I), decoder and write only); a tile shows sigmoid(c_t), the output mean. The
GIF has one frame per glimpse; with --show-attention each tile carries its write window (red) and, in reconstruction
mode, the window the encoder read through (green). Reconstruction encodes real images (`test:N`: N test images drawn
at random, seeded by --seed, from the data the model was trained on as recorded in its release, never the first N: a
test set may be sorted by class; or image files and folders, resized to the model's size and, for a binary model,
thresholded at 1/2) and prints each one's negative ELBO.

From Python:

    from speechdraw.draw.sample import load_draw, sample, reconstruct
    model, release = load_draw("RUN/release")          # weights-only, strict; ReleaseError names the bad file
    out = sample(model, 16, seed=1, out_dir="pictures", gif=True, show_attention=True)
    out.images                                          # (16, C, H, W) in [0, 1]; out.files maps names to paths

The release is read with torch.load(weights_only=True): a model file cannot run code when opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from speechdraw.draw import render
from speechdraw.draw.bounds import evaluation_subset
from speechdraw.draw.data import DataSource, list_images, load_image, load_test
from speechdraw.draw.model import Draw, DrawConfig, DrawTrace
from speechdraw.engine.release import Release, ReleaseError, load_release

GIF_SCALE = 3  # GIF tiles are enlarged 3x so the attention boxes are visible


@dataclass
class Pictures:
    images: Tensor  # (N, C, H, W) in [0, 1]: the final canvases
    trace: DrawTrace | None  # per-glimpse canvases (T, N, C, H, W) and windows (None: sample_by_label)
    files: dict[str, Path | list[Path]] = field(default_factory=dict)  # what was written, by name
    bounds: Tensor | None = None  # (N,) negative ELBO of each reconstructed image, nats


def load_draw(path: str | Path, device: str | torch.device = "cpu") -> tuple[Draw, Release]:
    """A DRAW release directory -> (model in eval mode on device, the release). Weights-only and strict: a missing
    file, a file that is not a release, a release of another kind or weights that do not fit its config raise
    ReleaseError naming the path."""
    release = load_release(path, kind="draw", map_location=device)
    known = {f.name for f in fields(DrawConfig)}
    mc = release.model_config
    if not isinstance(mc, dict) or set(mc) - known:
        extra = sorted(set(mc) - known) if isinstance(mc, dict) else mc
        raise ReleaseError(f"{release.dir / 'config.json'}: not a DRAW model config this speechdraw understands "
                           f"(unknown fields {extra})")
    try:
        cfg = DrawConfig(**mc)
    except (TypeError, ValueError) as e:
        raise ReleaseError(f"{release.dir / 'config.json'}: invalid DRAW model config ({e})") from e
    model = Draw(cfg)
    try:
        model.load_state_dict(release.state_dict, strict=True)
    except RuntimeError as e:
        raise ReleaseError(f"{release.dir / 'model.pt'}: the weights do not fit the model described in config.json "
                           f"({str(e).splitlines()[0]} ...)") from e
    return model.to(device).eval(), release


def _labels(model: Draw, label: int | None, num: int) -> Tensor | None:
    k = model.cfg.num_classes
    if label is None:
        if k:
            raise ValueError(f"this model is class-conditional ({k} classes): pass a label (--label K)")
        return None
    if not k:
        raise ValueError("this model is not class-conditional (it was trained without labels), so --label cannot "
                         "be used; train with --model.num_classes 10 for a model that draws a chosen digit")
    if not 0 <= label < k:
        raise ValueError(f"label {label} is out of range: this model knows classes 0..{k - 1}")
    return torch.full((num,), label, dtype=torch.long, device=model.canvas0.device)


def _write_animation(out: Pictures, out_dir: str | Path | None, stem: str, gif: bool, frames: bool,
                     frame_list) -> None:
    """stem.gif and/or stem_frames/glimpse_NNN.png from frame_list() (called once, only when needed)."""
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None and (gif or frames):
        pictures = frame_list()
        if gif:
            out.files["gif"] = render.save_gif(pictures, out_dir / f"{stem}.gif")
        if frames:
            out.files["frames"] = render.save_frames(pictures, out_dir / f"{stem}_frames")


def sample(model: Draw, num: int = 64, *, seed: int = 0, label: int | None = None, out_dir: str | Path | None = None,
           gif: bool = False, show_attention: bool = False, frames: bool = False, scale: int = 2,
           gif_num: int | None = None) -> Pictures:
    """Draw num images from the prior with a generator seeded by seed. With out_dir, writes samples.png (a grid,
    tiles enlarged `scale` times), and on request samples.gif / samples_frames/glimpse_NNN.png showing the first
    gif_num images (default: all) glimpse by glimpse, write windows outlined when show_attention."""
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    cfg = model.cfg
    labels = _labels(model, label, num)
    g = torch.Generator(device=model.canvas0.device).manual_seed(seed)
    trace = model.generate(num, labels=labels, return_steps=True, generator=g)
    out = Pictures(trace.images, trace)
    if out_dir is not None:
        out.files["png"] = render.save_grid(trace.images, Path(out_dir) / "samples.png", scale=scale)
    m = min(gif_num or num, num)

    def frame_list():
        windows = None
        if show_attention and trace.write is not None:
            windows = type(trace.write)(*(f[:, :m] for f in trace.write))
        return render.canvas_frames(trace.canvases[:, :m], windows, cfg.write_n, scale=GIF_SCALE)

    _write_animation(out, out_dir, "samples", gif, frames, frame_list)
    return out


def sample_by_label(model: Draw, per_label: int = 8, *, seed: int = 0, out_dir: str | Path | None = None,
                    scale: int = 2) -> Pictures:
    """A class-conditional model's samples, `per_label` of each class: one row per label (0 at the top), every row
    drawn from the same noise (seeded by seed), so the rows differ only by the label. With out_dir, writes
    samples_by_label.png."""
    k = model.cfg.num_classes
    if not k:
        _labels(model, 0, 1)  # raises: not class-conditional
    if per_label < 1:
        raise ValueError(f"--num (images per label) must be >= 1, got {per_label}")
    labels = torch.arange(k, device=model.canvas0.device).repeat_interleave(per_label)  # (k * per_label,)
    images = []
    for y in range(k):  # the same generator state per row: the same z draws under every label
        g = torch.Generator(device=model.canvas0.device).manual_seed(seed)
        images.append(model.generate(per_label, labels=labels[y * per_label:(y + 1) * per_label], generator=g).images)
    images = torch.cat(images)  # (k * per_label, C, H, W)
    out = Pictures(images, None)
    if out_dir is not None:
        out.files["png"] = render.save_grid(images, Path(out_dir) / "samples_by_label.png", nrow=per_label,
                                            scale=scale)
    return out


def reconstruct(model: Draw, images: Tensor, labels: Tensor | None = None, *, seed: int = 0,
                out_dir: str | Path | None = None, gif: bool = False, show_attention: bool = False,
                frames: bool = False, scale: int = 2) -> Pictures:
    """Encode and redraw real images (N, C, H, W). With out_dir, writes reconstruction.png (originals on the left,
    final canvases on the right) and on request reconstruction.gif / reconstruction_frames/, with the read (green)
    and write (red) windows of every glimpse when show_attention."""
    cfg = model.cfg
    dev = model.canvas0.device
    images = images.to(dev)
    g = torch.Generator(device=dev).manual_seed(seed)
    eps = torch.randn(cfg.steps, images.shape[0], cfg.z_size, generator=g, device=dev)
    trace = model.reconstruct(images, labels, eps=eps)
    out = Pictures(trace.images, trace, bounds=trace.loss.nll_bound)

    def frame_list():
        return render.reconstruction_frames(images, trace.canvases, trace.read if show_attention else None,
                                            trace.write if show_attention else None, cfg.read_n, cfg.write_n,
                                            scale=GIF_SCALE)

    if out_dir is not None:
        left, right = render.grid(images, scale=scale), render.grid(trace.images, scale=scale)
        both = Image.new("RGB", (left.width + right.width, left.height), render.BACKGROUND)
        both.paste(left, (0, 0))
        both.paste(right, (left.width, 0))
        path = Path(out_dir) / "reconstruction.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        both.save(path, format="PNG")
        out.files["png"] = path
    _write_animation(out, out_dir, "reconstruction", gif, frames, frame_list)
    return out


def load_images_for(model: Draw, release: Release, specs: list[str], data: str | None = None, seed: int = 0,
                    ) -> tuple[Tensor, Tensor | None, str]:
    """`test:N` or image files / folders -> (images (N, C, H, W) the model can encode, labels or None, description).

    test:N reads N test images drawn at random with `seed` (bounds.evaluation_subset; the description names their
    indices) from the data source recorded in the release (data: an IDX directory or a binarized .npz to use instead).
    Files are resized to the model's size; a Bernoulli model gets them thresholded at 1/2, a logistic one on the
    8-bit grid."""
    cfg = model.cfg
    if len(specs) == 1 and specs[0].startswith("test:"):
        try:
            n = int(specs[0][5:])
        except ValueError:
            raise ValueError(f"--reconstruct test:N needs a number, got {specs[0]!r}") from None
        if n < 1:
            raise ValueError(f"--reconstruct test:N needs N >= 1, got {n}")
        recorded = release.config.get("data")
        if not recorded and not data:
            raise ValueError(f"{release.dir}: the release records no data source; pass --data DIR_OR_NPZ")
        src = DataSource(**(recorded or {"height": cfg.height, "width": cfg.width, "channels": cfg.channels}))
        if data:
            is_npz = str(data).endswith(".npz")
            src.binarized_npz, src.root, src.image_folder = (data, "", "") if is_npz else ("", data, "")
        elif src.kind != "image_folder":
            where = Path(src.binarized_npz or src.root)
            if not where.exists():
                raise FileNotFoundError(f"{where}: the test data this model was trained with is not here; "
                                        f"pass --data DIR_OR_NPZ (MNIST IDX directory or binarized_mnist.npz)")
        test = load_test(src)
        idx, _ = evaluation_subset(len(test), n, seed)  # (n,)
        labels = test.labels[idx] if (test.labels is not None and cfg.num_classes) else None
        shown = " ".join(map(str, idx[:16].tolist())) + (" ..." if len(idx) > 16 else "")
        what = f"{len(idx)} random test images (seed {seed}; indices {shown}) of {src.describe_test()}"
        return test.images[idx], labels, what
    paths = []
    for spec in specs:
        found = list_images(spec)
        if not found:
            raise FileNotFoundError(f"no images under {spec}")
        paths.extend(found)
    images = torch.stack([load_image(p, (cfg.height, cfg.width), cfg.channels) for p in paths])
    if cfg.likelihood == "bernoulli":
        images = (images >= 0.5).float()
    if cfg.num_classes:
        raise ValueError("a class-conditional model needs labels for image files; use --reconstruct test:N")
    return images, None, f"{len(paths)} image file(s)"
