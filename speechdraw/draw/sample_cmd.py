"""`speechdraw sample` arguments and entry point (the work is in speechdraw/draw/sample.py).

Kept apart so that `speechdraw --help` builds every parser without importing torch.
"""

from __future__ import annotations

import argparse
import sys
import time

from speechdraw.asr.transcribe_cmd import add_threads_precision  # the same --threads/--precision as transcribe


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name (`speechdraw models list`), DRAW release directory "
                   "(RUN/release, with model.pt and config.json), release archive or its URL (default: the default "
                   "DRAW model, draw-mnist unless models/registry.json names another)")
    p.add_argument("--out", required=True, help="output directory (required)")
    p.add_argument("--num", type=int, default=64, help="images to sample (default: 64)")
    p.add_argument("--seed", type=int, default=0, help="noise seed, and for --reconstruct test:N the seed of the "
                                                       "random test images (default: 0)")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF, one frame per glimpse")
    p.add_argument("--gif-num", type=int, default=16, help="images shown in the GIF and frames (default: 16)")
    p.add_argument("--frames", action="store_true", help="also write one PNG per glimpse")
    p.add_argument("--show-attention", action="store_true",
                   help="outline the write window (red) and, when reconstructing, the read window (green) on every "
                        "GIF frame and per-glimpse PNG")
    p.add_argument("--reconstruct", nargs="+", default=None, metavar="IMAGES",
                   help="reconstruct real images instead of sampling: test:N (N random test images, seeded by "
                        "--seed) or image files and folders")
    p.add_argument("--data", default=None, help="for --reconstruct test:N: MNIST IDX directory or binarized .npz "
                                                "to read instead of the one recorded in the release")
    p.add_argument("--label", default=None, help="class to draw, or `all` for a grid with a row of --num images per "
                   "class, the same noise in every row (class-conditional models only)")
    p.add_argument("--scale", type=int, default=2, help="PNG grid enlargement (default: 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    add_threads_precision(p)


def run(args: argparse.Namespace) -> int:
    from speechdraw.draw.sample import _labels, load_draw, load_images_for, reconstruct, sample, sample_by_label
    from speechdraw.engine.device import inference_precision, resolve_device, set_threads
    from speechdraw.engine.release import ReleaseError
    from speechdraw.models import resolve_model

    label = args.label
    if label is not None and label != "all":
        try:
            label = int(label)
        except ValueError:
            print(f"speechdraw sample: error: --label takes a class number or `all`, not {label!r}", file=sys.stderr)
            return 2
    try:
        set_threads(args.threads)
        device = resolve_device(args.device)
        precision = inference_precision(args.precision, device)
        model, release = load_draw(resolve_model(args.model, kind="draw"), device)
        t0 = time.perf_counter()
        with precision.autocast():  # (fp32: none)
            if label == "all":
                if args.reconstruct or args.gif or args.frames:
                    raise ValueError("--label all writes one grid of samples: it takes no --reconstruct, --gif or "
                                     "--frames (draw one label at a time for those)")
                out = sample_by_label(model, args.num, seed=args.seed, out_dir=args.out, scale=args.scale)
                print(f"sampled {args.num} images of each of {model.cfg.num_classes} labels in "
                      f"{time.perf_counter() - t0:.2f} s")
            elif args.reconstruct:
                images, labels, what = load_images_for(model, release, args.reconstruct, args.data, args.seed)
                if label is not None:
                    labels = _labels(model, label, images.shape[0])
                out = reconstruct(model, images, labels, seed=args.seed, out_dir=args.out, gif=args.gif,
                                  show_attention=args.show_attention, frames=args.frames, scale=args.scale)
                bounds = out.bounds.tolist()
                print(f"reconstructed {what}: mean negative ELBO {sum(bounds) / len(bounds):.2f} nats "
                      f"(per image: {' '.join(f'{b:.1f}' for b in bounds[:16])}{' ...' if len(bounds) > 16 else ''})")
            else:
                out = sample(model, args.num, seed=args.seed, label=label, out_dir=args.out, gif=args.gif,
                             show_attention=args.show_attention, frames=args.frames, scale=args.scale,
                             gif_num=args.gif_num)
                print(f"sampled {args.num} images in {time.perf_counter() - t0:.2f} s")
    except (ReleaseError, FileNotFoundError, ValueError) as e:
        print(f"speechdraw sample: error: {e}", file=sys.stderr)
        return 2
    for name, path in out.files.items():
        shown = f"{len(path)} files in {path[0].parent}" if isinstance(path, list) else str(path)
        print(f"{name}: {shown}")
    return 0
