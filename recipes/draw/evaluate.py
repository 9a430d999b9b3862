"""Test-set bounds of a DRAW release, in nats per image, printed and written as JSON.

    python recipes/draw/evaluate.py --model ~/speechdraw-runs/draw-paper/release
    python recipes/draw/evaluate.py --model RUN/release --iwae-k 100 --json RUN/test_bounds.json
    python recipes/draw/evaluate.py --model RUN/release --max-images 1000 --iwae-images 500   # a quick look
    python recipes/draw/evaluate.py --model RUN/release --data ../shared/data/binarized_mnist/binarized_mnist.npz

- test NLL bound: the negative ELBO (reconstruction NLL + analytic KL of every z_t) with one latent sequence per image,
  averaged over the whole test set: the figure the DRAW paper reports (<= 80.97 with attention, 87.40 without).
- for a class-conditional model, the negative ELBO again with each image given the next class's label: how much the
  model relies on its labels.
- importance-weighted bound (Burda et al. 2016): -log (1/K sum_k w_k), K whole sequences z_1..T per image, over the
  whole test set: a tighter upper bound on -log p(x). --iwae-k 0 skips it.

Both default to the full test set, the figures to report. --max-images / --iwae-images score a random subset instead
(speechdraw.draw.bounds.evaluation_subset, seeded by --subset-seed; never the first N: the Larochelle binarised test
set is sorted by class), and the JSON records the rule, its seed and a hash of the indices. The IWAE subset is the
same draw as the ELBO's for the same size, and the negative ELBO on the IWAE images is reported beside it.

The test images are those the release records (its data source: IDX directory with the fixed binarisation's seed, or
the binarized .npz); --data names another IDX directory or .npz. An image-folder model is scored on its validation
split. Noise is seeded (--seed), so the figures are reproducible for given weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from speechdraw.draw.bounds import elbo_bound, iwae_bound
from speechdraw.draw.data import DataSource, load_test
from speechdraw.draw.sample import load_draw
from speechdraw.engine.release import ReleaseError


def test_source(release_config: dict, data: str | None) -> DataSource:
    """The recorded data source of a release, or `data` (IDX directory or .npz) in its place."""
    src = DataSource(**release_config.get("data", {}))
    if data:
        is_npz = data.endswith(".npz")
        src.binarized_npz, src.root, src.image_folder = (data, "", "") if is_npz else ("", data, "")
    if not (src.root or src.binarized_npz or src.image_folder):
        raise ValueError("the release records no data source: pass --data DIR_OR_NPZ")
    return src


def evaluate_release(model_path: str, *, data: str | None = None, iwae_k: int = 100, iwae_images: int = 0,
                     max_images: int = 0, batch_size: int = 500, iwae_batch: int = 2000, seed: int = 0,
                     subset_seed: int = 0, device: str = "cpu", log=print) -> dict:
    """The figures recipes/draw/evaluate.py prints, as a dict."""
    model, release = load_draw(model_path, device)
    src = test_source(release.config, data)
    test = load_test(src)
    cfg = model.cfg
    result = {"model": str(release.dir), "data": src.describe_test(), "config": release.model_config,
              "release_metrics": release.metrics}
    t0 = time.perf_counter()
    b = elbo_bound(model, test, batch_size=batch_size, seed=seed, max_images=max_images, subset_seed=subset_seed)
    result["test_bound"] = b["bound"]
    result["test_bound_stderr"] = b["bound_stderr"]
    result["test_recon"], result["test_kl"], result["test_images"] = b["recon"], b["kl"], b["images"]
    result["test_bits_per_dim"], result["test_subset"] = b["bits_per_dim"], b["subset"]
    result["test_bound_seconds"] = time.perf_counter() - t0
    log(f"test NLL bound (negative ELBO): {b['bound']:.2f} +- {b['bound_stderr']:.2f} nats "
        f"(recon {b['recon']:.2f} + KL {b['kl']:.2f}) on {_which(b['subset'])}; T={cfg.steps}, "
        f"attention {cfg.attention} ({result['test_bound_seconds']:.1f} s)")
    if cfg.num_classes and test.labels is not None:
        # Label use: the same images, the same noise, each given the next class's label. A model that ignores its
        # labels scores the same; one that draws what the label asks for scores much worse.
        w = elbo_bound(model, test.with_next_labels(cfg.num_classes), batch_size=batch_size, seed=seed,
                       max_images=max_images, subset_seed=subset_seed)
        result["test_bound_wrong_label"] = w["bound"]
        log(f"  given each image the next class's label instead: {w['bound']:.2f} nats "
            f"({w['bound'] - b['bound']:+.2f})")
    if iwae_k > 0:
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        w = iwae_bound(model, test, k=iwae_k, num_images=iwae_images, subset_seed=subset_seed, batch_size=iwae_batch)
        # The negative ELBO on the same images, for a like-for-like comparison.
        same = b if w["subset"] == b["subset"] else elbo_bound(model, test, batch_size=batch_size, seed=seed,
                                                               max_images=iwae_images, subset_seed=subset_seed)
        result["iwae_bound"], result["iwae_bound_stderr"] = w["bound"], w["bound_stderr"]
        result["iwae_k"], result["iwae_images"], result["iwae_subset"] = iwae_k, w["images"], w["subset"]
        result["elbo_bound_on_iwae_images"] = same["bound"]
        result["iwae_seconds"] = time.perf_counter() - t0
        log(f"importance-weighted bound, K={iwae_k}: {w['bound']:.2f} +- {w['bound_stderr']:.2f} nats on "
            f"{_which(w['subset'])} (negative ELBO on the same images {same['bound']:.2f}; "
            f"{result['iwae_seconds']:.1f} s)")
    return result


def _which(subset: dict) -> str:
    """'all 10000 test images' or '2000 random test images of 10000 (seed 0)'."""
    if subset["rule"] == "all":
        return f"all {subset['images']} test images"
    return f"{subset['images']} random test images of {subset['of']} (subset seed {subset['seed']})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="DRAW release directory (required)")
    ap.add_argument("--data", default=None, help="MNIST IDX directory or binarized .npz to score instead of the "
                                                 "release's recorded data (default: recorded)")
    ap.add_argument("--iwae-k", type=int, default=100, help="importance samples per image (0: skip; default: 100)")
    ap.add_argument("--iwae-images", type=int, default=0, help="IWAE bound on a random N test images (0: all; "
                                                               "default: 0)")
    ap.add_argument("--max-images", type=int, default=0, help="negative ELBO on a random N test images (0: all; "
                                                              "default: 0)")
    ap.add_argument("--subset-seed", type=int, default=0, help="seed of the random subsets (default: 0)")
    ap.add_argument("--batch", type=int, default=500, help="images per forward pass (default: 500)")
    ap.add_argument("--iwae-batch", type=int, default=2000, help="image x sample rows per IWAE forward pass "
                                                                 "(default: 2000)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: default; default: 1)")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    for name in ("iwae_k", "iwae_images", "max_images"):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = evaluate_release(args.model, data=args.data, iwae_k=args.iwae_k, iwae_images=args.iwae_images,
                                  max_images=args.max_images, batch_size=args.batch, iwae_batch=args.iwae_batch,
                                  seed=args.seed, subset_seed=args.subset_seed, device=args.device)
    except (ReleaseError, FileNotFoundError, ValueError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
