"""The speech release: the engine's release directory plus what inference needs to turn audio into text.

    <release>/model.pt            acoustic model weights (weights-only state dict)
    <release>/config.json         kind "asr"; "model": AcousticModelConfig, "features": FeatureConfig, metrics
    <release>/tokens.txt          token set in id order (space written "|"); model output i + 1 is token i, 0 is blank
    <release>/feature_stats.json  global CMVN mean/std per mel band (when features.cmvn == "global")
  optional, for beam search (written by recipes/asr/tune_decoder.py or export.py --decoder; see add_decoder):
    <release>/decoder.json        BeamConfig: tuned weights, paths relative to the release (lm.arpa, lexicon.txt)
    <release>/lm.arpa             n-gram LM (word n-gram with a lexicon, character n-gram without)
    <release>/lexicon.txt         lexicon (word<TAB>spelling), lexicon mode only
    <release>/rnnlm/              LSTM LM release (model.pt, config.json, vocab.txt) for N-best rescoring

    asr = load_speech_release("runs/asr-cpu/release", device="cpu")
    feats, lens = asr.features(waves, wave_lens)
    log_probs, out_lens = asr.model(feats, lens)
    hyps = greedy_decode(log_probs, out_lens, asr.tokens)
    # or simply: asr.transcribe_batch([wave, ...], decoder="greedy" | "beam" | "rescore")
    # asr.beam_config (BeamConfig with absolute paths, or None), asr.rescorer_dir (Path or None)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder
from speechdraw.asr.decode import Hypothesis, StepTimes, align_words, greedy_decode
from speechdraw.asr.features import FeatureConfig, FeatureExtractor, FeatureStats, pad_waves
from speechdraw.asr.model import AcousticModel, AcousticModelConfig
from speechdraw.asr.text import TokenSet, token_set
from speechdraw.engine.config import from_dict, to_dict
from speechdraw.engine.ema import checkpoint_weights
from speechdraw.engine.release import ReleaseError, load_release, save_release, weights_file

KIND = "asr"
DECODER_FILE, LM_FILE, LEXICON_FILE, RESCORER_DIR = "decoder.json", "lm.arpa", "lexicon.txt", "rnnlm"
DECODERS = ("greedy", "beam", "rescore")  # rescore: beam search, then the N-best list re-ranked by the LSTM LM


@dataclass
class SpeechModel:
    model: AcousticModel  # in eval mode
    features: FeatureExtractor
    tokens: TokenSet
    feature_config: FeatureConfig
    model_config: AcousticModelConfig
    config: dict  # the release's config.json
    dir: Path
    beam_config: BeamConfig | None = None  # decoder.json, lexicon/lm paths made absolute; None: greedy only
    rescorer_dir: Path | None = None  # rnnlm/: the LSTM LM release for N-best rescoring; None: no rescoring
    _beam: BeamSearchDecoder | None = field(default=None, repr=False, compare=False)
    _rescorer: object = field(default=None, repr=False, compare=False)

    @property
    def frame_shift(self) -> float:
        """Seconds per model output frame."""
        return self.feature_config.hop_ms / 1000 * self.model_config.stack

    @property
    def step_times(self) -> StepTimes:
        """Output step -> seconds of the input, for word timings (the window-centre offset included)."""
        return StepTimes.of(self.feature_config, self.model_config.stack)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def log_probs(self, waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """[(S_i,)] at the release's sample rate -> (B, T', V) log-probabilities, (B,) lengths."""
        padded, lens = pad_waves(waves)
        feats, flens = self.features(padded.to(self.device), lens.to(self.device))
        return self.model(feats, flens)

    @property
    def rescore_weight(self) -> float | None:
        """The tuned LSTM-LM weight for N-best rescoring (decoder.json's rescore_weight); None without a decoder."""
        return self.beam_config.rescore_weight if self.beam_config is not None else None

    def beam_decoder(self) -> BeamSearchDecoder:
        """The release's beam search (built on first use: KenLM reads the ARPA file then)."""
        if self.beam_config is None:
            raise ReleaseError(f"{self.dir}: this release has no {DECODER_FILE}: only greedy decoding")
        if self._beam is None:
            self._beam = BeamSearchDecoder(self.tokens, self.beam_config)
        return self._beam

    def rescorer(self):
        """The release's LSTM LM as an LSTMScorer (loaded weights-only on first use, on the model's device)."""
        from speechdraw.asr.lm.rnnlm import load_rnnlm

        if self.rescorer_dir is None:
            raise ReleaseError(f"{self.dir}: this release has no {RESCORER_DIR}/ LSTM LM for rescoring")
        if self._rescorer is None:
            self._rescorer = load_rnnlm(self.rescorer_dir, device=self.device)
        return self._rescorer

    def decode(self, log_probs: torch.Tensor, out_lens: torch.Tensor, decoder: str = "greedy") -> list:
        """(B, T, V) log-probabilities, (B,) lengths -> one hypothesis per utterance (.text, .tokens, .timesteps),
        by greedy decoding, the release's beam search, or beam search + LSTM rescoring of its N-best list."""
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
        if decoder == "greedy":
            return greedy_decode(log_probs, out_lens, self.tokens)
        nbests = self.beam_decoder()(log_probs, out_lens)
        if decoder == "rescore":
            from speechdraw.asr.lm.rnnlm import rescore_nbest

            best = rescore_nbest(nbests, self.rescorer(), weight=self.beam_config.rescore_weight,
                                 length_bonus=self.beam_config.rescore_length_bonus)
        else:
            best = [nbest[0] if nbest else None for nbest in nbests]
        return [h if h is not None else Hypothesis(tokens=[], timesteps=[], text="", score=float("-inf"))
                for h in best]

    @torch.no_grad()
    def transcribe_batch(self, waves: list[torch.Tensor], *, word_timings: bool = False,
                         decoder: str = "greedy") -> list[Hypothesis]:
        log_probs, out_lens = self.log_probs(waves)
        hyps = self.decode(log_probs, out_lens, decoder)
        if word_timings:
            align_words(hyps, log_probs, out_lens, self.tokens, self.step_times)
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
    beam_config, rescorer_dir = _load_decoder(rel.dir)
    return SpeechModel(model, features, tokens, feat_cfg, model_cfg, rel.config, rel.dir, beam_config, rescorer_dir)


def _load_decoder(release_dir: Path) -> tuple[BeamConfig | None, Path | None]:
    """decoder.json (paths made absolute, every named file present) and rnnlm/, when the release has them."""
    rescorer_dir = release_dir / RESCORER_DIR
    if rescorer_dir.exists() and not (all((rescorer_dir / f).is_file() for f in ("config.json", "vocab.txt"))
                                      and any((rescorer_dir / f).is_file() for f in ("model.pt", "model.safetensors"))):
        raise ReleaseError(f"{rescorer_dir}: incomplete LSTM LM release (needs model.pt or model.safetensors, "
                           f"config.json, vocab.txt)")
    rescorer = rescorer_dir.resolve() if rescorer_dir.exists() else None
    path = release_dir / DECODER_FILE
    if not path.is_file():
        return None, rescorer
    try:
        cfg = BeamConfig.load(path)
    except ValueError as e:
        raise ReleaseError(str(e)) from e
    files = {}
    for name in ("lexicon", "lm"):
        rel = getattr(cfg, name)
        if rel:
            if os.path.isabs(rel) or not (release_dir / rel).resolve().is_relative_to(release_dir.resolve()):
                raise ReleaseError(f"{path}: {name} {rel!r} must be a file inside the release directory")
            if not (release_dir / rel).is_file():
                raise ReleaseError(f"{path}: names {name} {rel!r}, which is not in the release")
            files[name] = str((release_dir / rel).resolve())
    if cfg.rescore_weight and rescorer is None:
        raise ReleaseError(f"{path}: rescore_weight is set but the release has no {RESCORER_DIR}/ LSTM LM")
    return replace(cfg, **files), rescorer


def add_decoder(release_dir: str | os.PathLike, cfg: BeamConfig, *, base_dir: str | os.PathLike | None = None,
                rnnlm: str | os.PathLike | None = None) -> Path:
    """Put beam-search settings and their files into a speech release: the LM as lm.arpa, the lexicon as
    lexicon.txt, `rnnlm` (an LSTM LM release directory) as rnnlm/, and decoder.json naming them relative to the
    release. cfg's lexicon/lm paths are resolved against base_dir (default: the working directory). Files of an
    earlier decoder that the new one does not use are removed. Returns the decoder.json path."""
    from speechdraw.asr.lm.rnnlm import load_rnnlm

    out = Path(release_dir)
    if not (out / "config.json").is_file():
        raise ReleaseError(f"{out}: not a release directory (no config.json)")
    base = Path(base_dir) if base_dir is not None else Path(".")
    files = {}
    for name, target in (("lexicon", LEXICON_FILE), ("lm", LM_FILE)):
        src = getattr(cfg, name)
        files[name] = ""
        if src:
            src_path = base / src
            if not src_path.is_file():
                raise FileNotFoundError(f"{src_path}: no such {name} file")
            if src_path.resolve() != (out / target).resolve():
                shutil.copyfile(src_path, out / target)
            files[name] = target
        elif (out / target).exists():
            (out / target).unlink()
    if rnnlm is not None:
        load_rnnlm(rnnlm)  # refuse a directory that is not a loadable LSTM LM release
        if Path(rnnlm).resolve() != (out / RESCORER_DIR).resolve():
            shutil.rmtree(out / RESCORER_DIR, ignore_errors=True)
            (out / RESCORER_DIR).mkdir()
            for f in (weights_file(rnnlm).name, "config.json", "vocab.txt"):  # a shipped one has safetensors
                shutil.copyfile(Path(rnnlm) / f, out / RESCORER_DIR / f)
    if cfg.rescore_weight and not (out / RESCORER_DIR).is_dir():
        raise ValueError(f"rescore_weight {cfg.rescore_weight} needs an LSTM LM (rnnlm) in {out}")
    tmp = replace(cfg, **files).save(out / (DECODER_FILE + ".tmp"))
    os.replace(tmp, out / DECODER_FILE)
    return out / DECODER_FILE


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
