"""Transcription: audio files of any length -> `Transcript`s (text, timed words with confidences, subtitle segments,
N-best lists), with greedy or beam search decoding, on CPU or GPU. The `speechdraw transcribe` command is a thin layer
over this.

    import speechdraw
    t = speechdraw.transcribe("talk.flac", model="runs/asr-tiny/release")             # one path -> one Transcript
    ts = speechdraw.transcribe(["a.wav", "b.mp3"], model=..., lm="lm/word4.arpa", lexicon="lm/lexicon.txt")

    tr = speechdraw.Transcriber("runs/asr-tiny/release", device="cpu", batch_size=8)
    tr = speechdraw.Transcriber.from_pretrained("asr-en-synth")   # by name (`speechdraw models list`)
    for t in tr.iter_transcribe(paths):                   # one Transcript per path, in order, as each finishes
        print(t.path, t.error or t.text)

The pipeline for each file (memory stays bounded however long it is):
  stream_audio        blocks of mono 16 kHz samples (speechdraw.asr.stream)
  split_at_silences   chunks between pauses, at most max_chunk seconds (speechdraw.asr.segment)
  acoustic model      batch_size chunks at a time (chunks of consecutive files share batches) -> CTC log-probabilities
  decoder             greedy, or beam search (n-gram LM, lexicon) with optional LSTM-LM rescoring of its N-best list
  word timings        the best hypothesis force-aligned to the posteriors: start, end, confidence per word
  segments            words grouped into subtitle cues (speechdraw.asr.transcript.make_segments)

Decoding: greedy unless an LM, a lexicon, a beam size, N-best > 1 or a rescoring LM is asked for, or the release
carries a tuned decoder (`beam_config`, decoder.json); `greedy=True` forces greedy. A file that cannot be read gives a
Transcript whose `error` says why (the others are still transcribed).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechdraw.asr.audio import AudioError
from speechdraw.asr.beam import BeamConfig, BeamSearchDecoder, read_hotwords
from speechdraw.asr.decode import greedy_decode, word_alignments
from speechdraw.asr.onnx import BACKENDS, OnnxAcousticModel
from speechdraw.asr.release import SpeechModel, load_speech_release
from speechdraw.asr.segment import Chunk, SegmentConfig, split_at_silences
from speechdraw.asr.stream import stream_array, stream_audio
from speechdraw.asr.transcript import Alternative, CueLimits, NBest, Transcript, Word, make_segments
from speechdraw.engine.device import inference_precision, resolve_device  # noqa: F401 (re-exported)

Progress = Callable[[float], None]  # called with seconds of audio read since the last call


def model_name(asr: SpeechModel) -> str:
    """The name a transcript gives its model: the release's card.json name (archives from export.py --archive and
    models by name have one), else its directory's name (or parent/release for a run's release directory)."""
    if asr.dir is None:  # a model built in memory, not loaded from a release
        return type(asr.model).__name__
    card = asr.dir / "card.json"
    if card.is_file():
        try:
            return str(json.loads(card.read_text())["name"])
        except (ValueError, KeyError, TypeError):
            pass
    return f"{asr.dir.parent.name}/{asr.dir.name}" if asr.dir.name == "release" else asr.dir.name


@dataclass
class _File:
    """A file being transcribed."""

    path: str | None
    samples: int = 0
    words: list[Word] = field(default_factory=list)
    nbest: list[NBest] = field(default_factory=list)
    error: str | None = None


class Transcriber:
    """Loads the release (weights-only), the decoder and the rescoring LM once; transcribes any number of files.

    model          release directory (or an already loaded SpeechModel)
    device         "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    lm, lexicon    ARPA n-gram (word-level with a lexicon, character-level without) and lexicon file for beam search
    lm_weight, word_score   decoder weights (default: the release's tuned ones when it has them, else 0.5 and 0)
    beam           beam size; nbest: alternatives kept per chunk (beam search when > 1)
    rescore_lm     LSTM-LM release directory: re-rank the beam's N-best list (weight: rescore_weight)
    batch_size     chunks per forward pass of the acoustic model
    backend        "torch", or "onnxruntime": the release's model.onnx on the CPU (speechdraw.asr.onnx)
    segment        how audio is cut into chunks (SegmentConfig); cues: subtitle limits (CueLimits)
    precision      "fp32", "bf16" (CPU, or a GPU that has it) or "fp16" (CUDA): autocast for the acoustic model
    hotwords       word or phrase -> bonus, or a hotwords file (speechdraw.asr.beam.read_hotwords): lexicon beam search
                   favours them, adding the missing ones to the lexicon
    """

    def __init__(self, model: str | os.PathLike | SpeechModel, *, device: str | torch.device = "auto",
                 lm: str | os.PathLike | None = None, lexicon: str | os.PathLike | None = None,
                 lm_weight: float | None = None, word_score: float | None = None, beam: int | None = None,
                 nbest: int = 1, rescore_lm: str | os.PathLike | None = None, rescore_weight: float | None = None,
                 greedy: bool = False, batch_size: int = 8, segment: SegmentConfig | None = None,
                 cues: CueLimits | None = None, block_seconds: float = 30.0,
                 hotwords: dict[str, float] | str | os.PathLike | None = None, precision: str = "fp32",
                 backend: str = "torch"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "onnxruntime" and str(device) == "auto":
            device = "cpu"  # onnxruntime runs on the CPU here
        if backend == "onnxruntime" and precision != "fp32":
            raise ValueError(f"--backend onnxruntime runs model.onnx in fp32, not {precision}: use --precision fp32")
        if batch_size < 1 or nbest < 1 or (beam is not None and beam < 1):
            raise ValueError("batch_size, nbest and beam must be >= 1")
        self.device = resolve_device(device)
        if isinstance(model, SpeechModel):
            self.asr = model
            self.device = model.device
        else:
            self.asr = load_speech_release(model, self.device)
        self.onnx = OnnxAcousticModel(self.asr) if backend == "onnxruntime" else None  # None: PyTorch
        self.precision = inference_precision(precision, self.device)
        self.sample_rate = self.asr.feature_config.sample_rate
        self.batch_size, self.nbest = batch_size, nbest
        self.segment = segment or SegmentConfig(sample_rate=self.sample_rate)
        if self.segment.sample_rate != self.sample_rate:
            raise ValueError(f"segment.sample_rate {self.segment.sample_rate} != the model's {self.sample_rate}")
        self.cues = cues or CueLimits()
        self.block_seconds = block_seconds

        tuned: BeamConfig | None = None if greedy else getattr(self.asr, "beam_config", None)
        # The release's LSTM LM rescores by default only when its decoder.json gives it a weight.
        release_rescorer = getattr(self.asr, "rescorer_dir", None)
        if rescore_lm is None and tuned is not None and tuned.rescore_weight and release_rescorer is not None:
            rescore_lm = release_rescorer
        asked_beam = (lm is not None or lexicon is not None or beam is not None or nbest > 1 or rescore_lm is not None
                      or bool(hotwords))
        if greedy and asked_beam:
            raise ValueError("greedy decoding takes no LM, lexicon, beam size, N-best or rescoring LM")
        self.beam_config = None if greedy else self._beam_config(tuned, lm, lexicon, lm_weight, word_score, beam,
                                                                 rescore_lm is not None)
        if isinstance(hotwords, (str, os.PathLike)):
            hotwords = read_hotwords(hotwords)
        if hotwords and (self.beam_config is None or not self.beam_config.lexicon):
            raise ValueError("hotwords need lexicon beam search: give --lexicon (and --lm), or use a release whose "
                             "tuned decoder has a lexicon")
        self.decoder = (BeamSearchDecoder(self.asr.tokens, self.beam_config, hotwords=hotwords or None)
                        if self.beam_config else None)
        self.rescorer = None
        self.rescore_weight = self.rescore_bonus = 0.0
        if rescore_lm is not None:
            from speechdraw.asr.lm.rnnlm import load_rnnlm

            self.rescorer = load_rnnlm(rescore_lm, self.device)
            self.rescore_weight = (rescore_weight if rescore_weight is not None
                                   else self.beam_config.rescore_weight or 0.5)
            self.rescore_bonus = self.beam_config.rescore_length_bonus
        self.description = self._describe(rescore_lm)
        self.labels = {"decoder": self.description, "model": model_name(self.asr),  # every Transcript carries them
                       "language": self.asr.config.get("language", "en")}

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike | None = None, **options) -> Transcriber:
        """A Transcriber for a model name (`speechdraw models list`; None: the default speech model), release
        directory, release archive or archive URL (speechdraw.models.resolve_model). `options` as for __init__."""
        from speechdraw.models import resolve_model

        return cls(resolve_model(name, kind="asr"), **options)

    # ------------------------------------------------------------------------------------------------- setup

    def _beam_config(self, tuned, lm, lexicon, lm_weight, word_score, beam, rescoring: bool) -> BeamConfig | None:
        """The release's tuned decoder (SpeechModel.beam_config: absolute paths) with the caller's changes."""
        if lm is not None or lexicon is not None:
            mode = "lexicon" if lexicon is not None else "lexicon-free"
            base = tuned if tuned is not None and tuned.mode == mode else BeamConfig(lm_weight=0.5)
            for p in (lm, lexicon):
                if p is not None and not Path(p).is_file():
                    raise FileNotFoundError(f"{p}: no such file")
            cfg = dataclasses.replace(base, lm=str(Path(lm).resolve()) if lm is not None else "",
                                      lexicon=str(Path(lexicon).resolve()) if lexicon is not None else "")
        elif tuned is not None:
            cfg = tuned
        elif beam is not None or self.nbest > 1 or rescoring:
            cfg = BeamConfig()  # lexicon-free CTC prefix search without an LM
        else:
            return None
        changes = {"nbest": max(self.nbest, 10 if rescoring else 1)}
        if beam is not None:
            changes["beam_size"] = beam
        if lm_weight is not None:
            changes["lm_weight"] = lm_weight
        if word_score is not None:
            changes["word_score"] = word_score
        return dataclasses.replace(cfg, **changes)

    def _describe(self, rescore_dir) -> str:
        if self.beam_config is None:
            return "greedy"
        c = self.beam_config
        parts = [f"beam {c.beam_size}", c.mode]
        if c.lm:
            parts.append(f"lm {Path(c.lm).name} (weight {c.lm_weight:g})")
        if getattr(self.decoder, "hotwords", None):
            parts.append(f"{len(self.decoder.hotwords)} hotwords")
        if rescore_dir is not None:
            parts.append(f"rescored by {Path(rescore_dir).name} (weight {self.rescore_weight:g})")
        return "beam search: " + ", ".join(parts)

    # ------------------------------------------------------------------------------------------------- API

    def transcribe(self, audio: str | os.PathLike | Iterable[str | os.PathLike], *,
                   on_progress: Progress | None = None) -> Transcript | list[Transcript]:
        """One path -> one Transcript; several -> a list, in order."""
        if isinstance(audio, (str, os.PathLike)):
            return next(self.iter_transcribe([audio], on_progress=on_progress))
        return list(self.iter_transcribe(audio, on_progress=on_progress))

    def transcribe_array(self, wave: np.ndarray | torch.Tensor, sample_rate: int) -> Transcript:
        """An in-memory (S,) or (S, C) waveform at `sample_rate`."""
        if isinstance(wave, torch.Tensor):
            wave = wave.detach().cpu().numpy()
        if wave.shape[0] == 0:
            return Transcript(None, error="no samples", **self.labels)
        jobs = [(None, lambda: stream_array(wave, sample_rate, self.sample_rate, self.block_seconds))]
        return next(self._run(jobs, None))

    def iter_transcribe(self, paths: Iterable[str | os.PathLike], *,
                        on_progress: Progress | None = None) -> Iterator[Transcript]:
        """Transcripts in input order, each as soon as its file is done."""
        jobs = ((str(p), lambda p=p: stream_audio(p, self.sample_rate, self.block_seconds)) for p in paths)
        return self._run(jobs, on_progress)

    # ------------------------------------------------------------------------------------------------- pipeline

    def _run(self, jobs, on_progress: Progress | None) -> Iterator[Transcript]:
        batch: list[tuple[_File, Chunk]] = []
        read: list[_File] = []  # files read to the end whose last chunks may still wait in `batch`
        n_fft = self.asr.feature_config.n_fft
        for path, open_blocks in jobs:
            f = _File(path)
            try:
                for chunk in split_at_silences(self._count(open_blocks(), f, on_progress), self.segment):
                    if len(chunk.wave) < n_fft:
                        continue  # shorter than one analysis window: nothing the model could hear
                    batch.append((f, chunk))
                    if len(batch) == self.batch_size:
                        self._decode(batch)
                        batch = []
                        yield from (self._finish(r) for r in read)
                        read = []
            except AudioError as e:
                f.error = e.reason
            read.append(f)
            if not batch:
                yield from (self._finish(r) for r in read)
                read = []
        if batch:
            self._decode(batch)
        yield from (self._finish(r) for r in read)

    def _count(self, blocks: Iterable[np.ndarray], f: _File, on_progress: Progress | None) -> Iterator[np.ndarray]:
        for block in blocks:
            f.samples += len(block)
            if on_progress is not None:
                on_progress(len(block) / self.sample_rate)
            yield block

    @torch.no_grad()
    def _decode(self, batch: list[tuple[_File, Chunk]]) -> None:
        acoustic = self.onnx or self.asr
        with self.precision.autocast():  # the features inside run in fp32 whatever the precision
            log_probs, lens = acoustic.log_probs([torch.from_numpy(c.wave) for _, c in batch])  # (B, T, V), (B,)
        log_probs, lens = log_probs.float().cpu(), lens.cpu()
        if self.decoder is None:
            ranked = [[(h, h.score, None)] for h in greedy_decode(log_probs, lens, self.asr.tokens)]
        elif self.rescorer is None:
            ranked = [[(h, h.score, None) for h in nb] for nb in self.decoder(log_probs, lens)]
        else:
            ranked = self._rescore(self.decoder(log_probs, lens))  # [[(hypothesis, score, LSTM log-prob)]]
        times = self.asr.step_times
        for b, ((f, chunk), nbest) in enumerate(zip(batch, ranked)):
            if f.error is not None:
                continue
            f.nbest.append(NBest(round(chunk.start_s, 3), round(chunk.end_s, 3),
                                 self._alternatives(nbest[: self.nbest])))
            if not nbest or not nbest[0][0].tokens:
                continue
            best = nbest[0][0]
            aligned = word_alignments(log_probs[b, : int(lens[b])], best.tokens, self.asr.tokens, times)
            if not aligned:  # cannot happen for paths decoded from these posteriors; keep the words untimed
                aligned = [Word(w, 0.0, len(chunk.wave) / self.sample_rate, 0.0) for w in best.text.split()]
            lo, hi = chunk.keep
            for w in aligned:
                start, end = chunk.start_s + w.start, chunk.start_s + w.end
                if lo <= (start + end) / 2 < hi:
                    f.words.append(Word(w.word, start, end, w.confidence))

    def _rescore(self, nbests: list[list]) -> list[list]:
        """Re-rank every N-best list by first-pass score + weight * LSTM-LM log-probability (+ bonus per word); the
        LSTM scores all hypotheses of the batch in one call. Hypotheses gain `rescore_lm` and the new `score`."""
        from speechdraw.asr.lm.rnnlm import rescore

        scores = self.rescorer([h.text for nb in nbests for h in nb])
        out, i = [], 0
        for nb in nbests:
            ranked = rescore(nb, scores[i:i + len(nb)], weight=self.rescore_weight, length_bonus=self.rescore_bonus)
            i += len(nb)
            out.append([(r.hypothesis, r.score, r.lm_logprob) for r in ranked])
        return out

    def _alternatives(self, ranked: list) -> list[Alternative]:
        beam, lm = self.decoder is not None, self.decoder is not None and bool(self.beam_config.lm)
        return [Alternative(h.text, float(score), float(h.am_score) if beam else None,
                            float(h.lm_score) if lm else None, None if rlm is None else float(rlm))
                for h, score, rlm in ranked]

    def _finish(self, f: _File) -> Transcript:
        duration = f.samples / self.sample_rate
        if f.error is not None:
            return Transcript(f.path, duration=round(duration, 3), error=f.error, **self.labels)
        words, prev_end = [], 0.0
        for w in f.words:  # monotonic and inside the audio, rounded to the millisecond
            start = min(max(w.start, prev_end), duration)
            end = min(max(w.end, start), duration)
            words.append(Word(w.word, round(start, 3), round(end, 3), round(float(w.confidence), 4)))
            prev_end = words[-1].end
        return Transcript(f.path, text=" ".join(w.word for w in words), words=words,
                          segments=make_segments(words, duration, self.cues), nbest=f.nbest,
                          duration=round(duration, 3), **self.labels)


def transcribe(audio: str | os.PathLike | Iterable[str | os.PathLike], model: str | os.PathLike | SpeechModel,
               **options) -> Transcript | list[Transcript]:
    """Transcribe one file (-> Transcript) or several (-> list). `options` are Transcriber's keyword arguments."""
    return Transcriber(model, **options).transcribe(audio)
