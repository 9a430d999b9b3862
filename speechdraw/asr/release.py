"""The speech release: the engine's release directory plus what inference needs to turn audio into text.

    <release>/model.pt            acoustic model weights (weights-only state dict)
    <release>/config.json         kind "asr"; "model": AcousticModelConfig, "features": FeatureConfig, metrics
    <release>/tokens.txt          token set in id order (space written "|"); model output i + 1 is token i, 0 is blank
    <release>/feature_stats.json  global CMVN mean/std per mel band (when features.cmvn == "global")

    asr = load_speech_release("runs/asr-cpu/release", device="cpu")
    feats, lens = asr.features(waves, wave_lens)
    log_probs, out_lens = asr.model(feats, lens)
    hyps = greedy_decode(log_probs, out_lens, asr.tokens)
    # or simply: asr.transcribe_batch([wave, ...])
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from speechdraw.asr.decode import Hypothesis, align_words, greedy_decode
from speechdraw.asr.features import FeatureConfig, FeatureExtractor, FeatureStats, pad_waves
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.text import TokenSet, token_set
from speechdraw.engine.config import from_dict, to_dict
from speechdraw.engine.release import ReleaseError, load_release, save_release

KIND = "asr"


@dataclass
class SpeechModel:
    model: AcousticModel  # in eval mode
    features: FeatureExtractor
    tokens: TokenSet
    feature_config: FeatureConfig
    model_config: AcousticModelConfig
    config: dict  # the release's config.json
    dir: Path

    @property
    def frame_shift(self) -> float:
        """Seconds per model output frame."""
        return self.feature_config.hop_ms / 1000 * self.model_config.stack

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def log_probs(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[(S_i,)] at the release's sample rate -> (B, T', V) log-probabilities, (B,) lengths."""
        padded, lens = pad_waves(waves)
        feats, flens = self.features(padded.to(self.device), lens.to(self.device))
        return self.model(feats, flens)

    @torch.no_grad()
    def transcribe_batch(self, waves: list[torch.Tensor], *, word_timings: bool = False) -> list[Hypothesis]:
        log_probs, out_lens = self.log_probs(waves)
        hyps = greedy_decode(log_probs, out_lens, self.tokens)
        if word_timings:
            align_words(hyps, log_probs, out_lens, self.tokens, self.frame_shift)
        return hyps


def save_speech_release(out_dir: str | os.PathLike, state_dict: dict, model_config: AcousticModelConfig,
                        feature_config: FeatureConfig, stats: FeatureStats | None, tokens: TokenSet, *,
                        metrics: dict | None = None, extra: dict | None = None) -> Path:
    if model_config.vocab_size != len(tokens) + 1:
        raise ValueError(f"model has {model_config.vocab_size} outputs but the token set {len(tokens)} tokens + blank")
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        tokens.save(Path(tmp) / "tokens.txt")
        files["tokens.txt"] = (Path(tmp) / "tokens.txt").read_text()
        if stats is not None:
            stats.save(Path(tmp) / "feature_stats.json")
            files["feature_stats.json"] = (Path(tmp) / "feature_stats.json").read_text()
    # Feature buffers (mean/std) live in feature_stats.json, not in model.pt: the acoustic model alone is the weights.
    return save_release(out_dir, state_dict, to_dict(model_config), kind=KIND, metrics=metrics,
                        extra={"features": feature_config.to_dict(), **(extra or {})}, extra_files=files)


def load_speech_release(path: str | os.PathLike, device: str | torch.device = "cpu") -> SpeechModel:
    """Release directory -> model (strict, weights-only, eval mode) + feature extractor + tokens, on `device`."""
    rel = load_release(path, kind=KIND)
    try:
        model_cfg = from_dict(AcousticModelConfig, rel.model_config)
        feat_cfg = from_dict(FeatureConfig, rel.config["features"])
    except (KeyError, TypeError, ValueError) as e:
        raise ReleaseError(f"{rel.dir}: config.json does not describe a speech model ({e})") from e
    for name in ["tokens.txt"] + (["feature_stats.json"] if feat_cfg.cmvn == "global" else []):
        if not rel.path(name).is_file():
            raise ReleaseError(f"{rel.dir}: not a complete speech release: {name} is missing")
    tokens = TokenSet.load(rel.path("tokens.txt"))
    if model_cfg.vocab_size != len(tokens) + 1:
        raise ReleaseError(f"{rel.dir}: tokens.txt has {len(tokens)} tokens but the model {model_cfg.vocab_size} "
                           f"outputs (tokens + blank)")
    stats = FeatureStats.load(rel.path("feature_stats.json")) if feat_cfg.cmvn == "global" else None
    model = AcousticModel(model_cfg)
    model.load_state_dict(rel.state_dict, strict=True)
    model.to(device).eval()
    features = FeatureExtractor(feat_cfg, stats).to(device).eval()
    return SpeechModel(model, features, tokens, feat_cfg, model_cfg, rel.config, rel.dir)


def checkpoint_weights(state: dict, weights: str = "auto") -> tuple[dict, str]:
    """The model weights of a resume checkpoint: "ema" (its EMA average), "model" (the raw weights) or "auto" (EMA
    when the run kept one). Returns (state dict, which)."""
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights must be auto, ema or model, got {weights!r}")
    ema = state.get("ema")
    if weights == "ema" and ema is None:
        raise ValueError("this checkpoint holds no EMA weights (the run had train.ema_decay 0)")
    if weights == "model" or ema is None:
        return dict(state["model"]), "model"
    shadow = ema["shadow"]
    return {k: (shadow[k].to(v.dtype) if k in shadow else v) for k, v in state["model"].items()}, "ema"


def export_checkpoint(state: dict, out_dir: str | os.PathLike, *, weights: str = "auto",
                      metrics: dict | None = None) -> Path:
    """Resume checkpoint written by recipes/asr/train.py -> speech release directory."""
    cfg = state["config"]
    model_cfg = from_dict(AcousticModelConfig, cfg["model"])
    feat_cfg = from_dict(FeatureConfig, cfg["features"])
    stats = state["extra"].get("feature_stats")
    tokens = token_set(cfg["data"]["tokens"])
    sd, which = checkpoint_weights(state, weights)
    loop = state["loop"]
    info = {"step": loop["step"], "epoch": loop["epoch"], "weights": which, **(metrics or {})}
    return save_speech_release(out_dir, sd, model_cfg, feat_cfg, FeatureStats.from_state(stats) if stats else None,
                               tokens, metrics=info)
