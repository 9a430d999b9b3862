"""CTC beam search through torchaudio's `ctc_decoder` (flashlight-text), with KenLM reading our ARPA files.

Two modes, chosen by the settings (`BeamConfig`, what a release keeps as decoder.json):
  * lexicon: hypotheses are sequences of lexicon words, scored by a word n-gram;
        score = am + lm_weight * lm + word_score * words + sil_score * (frames spent in silence "|")
  * lexicon-free: any token sequence, scored token by token by a character n-gram (units = tokens, "|" between
    words); with no LM at all this is plain CTC prefix search.
        score = am + lm_weight * lm + sil_score * (silence frames)
  am is the sum of the emission log-probabilities (natural log) along the best CTC path; lm is KenLM's log10
  probability of the hypothesis including </s>, unweighted (so lm_weight also converts log10 into the AM's units).
The rescore_* settings belong to the second pass, not to the beam: the N-best list re-ranked with an LSTM LM
(speechdraw.asr.lm.rnnlm.rescore_nbest; in a release, the LSTM LM is its rnnlm/ directory).

Conventions it relies on (the acoustic model's): emissions are (B, T, V) log-probabilities with the CTC blank at
index 0 and token-set id i at index i + 1; the token set is the character set (its " " is the word separator, "|" to
the decoder and the LM).

Lexicon format: `word<TAB>w o r d`, one spelling per word, with no trailing "|". The acoustic model is trained on
transcripts without a trailing space, so a spelling ending in "|" could not complete the last word of an utterance
(flashlight then drops it); "|" between words is consumed as silence at the lexicon root instead.

Hotwords (biasing, `hotwords={"zebulun": 4.0}`, from a file by read_hotwords): lexicon mode only. A hotword missing
from the lexicon is added with its spelling, and every hotword's words earn their bonus, in the units of the total
score (natural-log, like am), each time the beam completes one. The bonus is a unigram score addition made by an LM
wrapper (HotwordLM) around the n-gram: flashlight multiplies LM scores by lm_weight, so the wrapper adds
bonus / lm_weight; without an LM (or with lm_weight 0) it wraps flashlight's ZeroLM with weight 1, which changes
nothing else. Because flashlight also smears the LM's unigram scores over the lexicon trie, a hotword's bonus is
seen while it is still being spelled, so it survives the beam's pruning; a lexicon word score could not do that. A
phrase spreads its bonus evenly over its words, each rewarded wherever it appears (no phrase context). With
hotwords, lm_score includes the bonus / lm_weight of the hotwords in the hypothesis.

Two flashlight details handled here: KenLM in flashlight-text is compiled for orders <= 6 (`KENLM_MAX_ORDER`), and
torchaudio's lexicon-free path builds the LM's dictionary in a different order than the token dictionary unless it is
given one (`lm_dict`), which would score the wrong characters; we always give it the token list.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from speechdraw.asr.stream import quiet_stderr
from speechdraw.asr.text import SPACE_SYMBOL, TokenSet

BLANK_SYMBOL = "<blank>"  # the decoder's name for index 0 (no token of ours looks like it)
KENLM_MAX_ORDER = 6  # flashlight-text's bundled KenLM refuses higher orders


@dataclass
class BeamConfig:
    """Decoder settings; file paths are relative to the directory of the decoder.json they are read from."""

    lexicon: str = field(default="", metadata={"help": "lexicon file (word<TAB>spelling); '' for lexicon-free"})
    lm: str = field(default="", metadata={"help": "ARPA file: word n-gram with a lexicon, character n-gram without"})
    lm_weight: float = field(default=0.0, metadata={"help": "weight of the LM's log10 score"})
    word_score: float = field(default=0.0, metadata={"help": "added per word (lexicon mode)"})
    sil_score: float = field(default=0.0, metadata={"help": "added per word separator '|' taken as silence"})
    unk_score: float | None = field(default=None, metadata={
        "help": "score of spelling a word outside the lexicon (None: never)"})
    beam_size: int = field(default=50, metadata={"help": "hypotheses kept per frame"})
    beam_size_token: int = field(default=0, metadata={"help": "tokens tried per frame (0: all)"})
    beam_threshold: float = field(default=25.0, metadata={"help": "drop hypotheses this far below the best"})
    nbest: int = field(default=10, metadata={"help": "hypotheses returned per utterance (distinct transcripts)"})
    log_add: bool = field(default=False, metadata={"help": "merge paths with log-add instead of max"})
    rescore_weight: float = field(default=0.0, metadata={
        "help": "N-best rescoring: weight of the LSTM LM's natural-log probability (0: no rescoring)"})
    rescore_length_bonus: float = field(default=0.0, metadata={"help": "N-best rescoring: added per word"})

    def __post_init__(self):
        if self.beam_size < 1 or self.nbest < 1:
            raise ValueError("beam_size and nbest must be >= 1")

    @property
    def mode(self) -> str:
        return "lexicon" if self.lexicon else "lexicon-free"

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BeamConfig:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a valid decoder.json ({e})") from e


@dataclass
class Hypothesis:
    """One entry of an N-best list. Field-compatible with speechdraw.asr.decode.Hypothesis (tokens, timesteps, text,
    score, words), so word timings (decode.align_words) and the writers take it as they take a greedy result."""

    tokens: list[int]  # token-set ids (no blank), CTC-collapsed
    timesteps: list[int]  # output frame at which each token starts (non-decreasing)
    text: str  # words separated by single spaces
    score: float  # the beam's total score (see the module docstring)
    am_score: float = 0.0  # natural-log emission score of the best path
    lm_score: float = 0.0  # unweighted log10 LM probability including </s> (0 without an LM)
    words: list = field(default_factory=list)  # word timings, filled by decode.align_words; text.split() are the words


def decoder_tokens(tokens: TokenSet) -> list[str]:
    """The decoder's token list: blank first, then the token set with " " written "|" (ids shifted by one)."""
    if " " not in tokens:
        raise ValueError("beam search needs the character token set (a word separator ' ')")
    return [BLANK_SYMBOL] + [SPACE_SYMBOL if t == " " else t for t in tokens.tokens]


def write_lexicon(words: Iterable[str], path: str | os.PathLike, tokens: TokenSet | None = None) -> int:
    """Write `word<TAB>w o r d` lines for the words spellable in the token set (default: characters); <unk>, <s>,
    </s> and anything with another symbol are skipped. Returns the number of words written."""
    tokens = tokens or TokenSet.characters()
    lines = []
    for word in dict.fromkeys(words):
        if word and " " not in word and all(c in tokens for c in word):
            lines.append(f"{word}\t{' '.join(word)}\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines)


def arpa_order(path: str | os.PathLike) -> int:
    """Highest order named in an ARPA header."""
    order = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("ngram "):
                order = max(order, int(line[6:].split("=")[0]))
            elif line.startswith("\\1-grams"):
                break
    return order


def read_hotwords(path: str | os.PathLike) -> dict[str, float]:
    """A hotwords file: one word or phrase per line, optionally followed by its bonus ("Zebulun 4.0"; default
    DEFAULT_HOTWORD_BONUS); blank lines and lines starting with # are skipped. Words are lowercased (the models
    write lowercase). Raises ValueError naming the file and line for a bonus that is not a finite number."""
    out: dict[str, float] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the hotwords file ({e})") from None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        bonus = DEFAULT_HOTWORD_BONUS
        if len(parts) > 1:
            try:
                bonus = float(parts[-1])
                parts = parts[:-1]
            except ValueError:
                pass  # a phrase without a bonus
        if not math.isfinite(bonus):
            raise ValueError(f"{path}:{n}: the bonus must be a finite number, got {line!r}")
        out[" ".join(parts).lower()] = bonus
    if not out:
        raise ValueError(f"{path}: no hotwords in the file")
    return out


DEFAULT_HOTWORD_BONUS = 5.0  # natural-log units, like the acoustic score


def _hotword_lm(inner, bonus: dict[int, float]):
    """A flashlight LM: `inner`'s scores, plus bonus[word index] for the hotwords (module docstring)."""
    from torchaudio.models.decoder import CTCDecoderLM

    class HotwordLM(CTCDecoderLM):
        def __init__(self):
            super().__init__()
            self.inner, self.bonus = inner, bonus

        def start(self, start_with_nothing: bool):
            return self.inner.start(start_with_nothing)

        def score(self, state, usr_token_idx: int):
            state, score = self.inner.score(state, usr_token_idx)
            return state, score + self.bonus.get(usr_token_idx, 0.0)

        def finish(self, state):
            return self.inner.finish(state)

    return HotwordLM()


class BeamSearchDecoder:
    """`decoder(log_probs, lengths)` -> per utterance, an N-best list of `Hypothesis`, best first.

    lexicon and lm paths come from `cfg`, resolved against `base_dir`; `hotwords` (word or phrase -> bonus) biases
    the search towards them (module docstring). `load_seconds` is how long building the decoder took (dominated by
    KenLM reading the ARPA file and, with a lexicon, scoring every word for the trie).
    """

    def __init__(self, tokens: TokenSet, cfg: BeamConfig, base_dir: str | os.PathLike | None = None,
                 hotwords: dict[str, float] | None = None):
        from torchaudio.models.decoder import ctc_decoder

        self.cfg, self.tokens = cfg, tokens
        base = Path(base_dir) if base_dir is not None else Path(".")
        self.token_list = decoder_tokens(tokens)
        lexicon = str(base / cfg.lexicon) if cfg.lexicon else None
        lm = str(base / cfg.lm) if cfg.lm else None
        if lm is not None and arpa_order(lm) > KENLM_MAX_ORDER:
            raise ValueError(f"{lm}: order {arpa_order(lm)} > {KENLM_MAX_ORDER}, the highest flashlight's KenLM reads")
        if hotwords and lexicon is None:
            raise ValueError("hotwords need lexicon beam search: give a lexicon (--lexicon), or a release whose "
                             "tuned decoder has one")
        t0 = time.perf_counter()
        lm_weight = cfg.lm_weight
        with tempfile.TemporaryDirectory() as tmp, quiet_stderr():
            lm_dict = None
            if lm is not None and lexicon is None:
                lm_dict = os.path.join(tmp, "lm_tokens.txt")  # the LM's dictionary in token order (module docstring)
                Path(lm_dict).write_text("\n".join(self.token_list) + "\n", encoding="utf-8")
            if hotwords:
                lexicon, lm_dict, lm, lm_weight = self._with_hotwords(lexicon, lm, hotwords, Path(tmp))
            self._decoder = ctc_decoder(
                lexicon=lexicon, tokens=self.token_list, lm=lm, lm_dict=lm_dict,
                nbest=cfg.nbest,  # (unused: decode() below returns the whole final beam, merged in _nbest)
                beam_size=cfg.beam_size, beam_size_token=cfg.beam_size_token or None,
                beam_threshold=cfg.beam_threshold, lm_weight=lm_weight, word_score=cfg.word_score,
                unk_score=-math.inf if cfg.unk_score is None else cfg.unk_score, sil_score=cfg.sil_score,
                log_add=cfg.log_add, blank_token=BLANK_SYMBOL, sil_token=SPACE_SYMBOL, unk_word="<unk>")
        self.load_seconds = time.perf_counter() - t0

    def _with_hotwords(self, lexicon: str, lm: str | None, hotwords: dict[str, float], tmp: Path):
        """The lexicon with the hotwords' missing words added, the word dictionary (lexicon order, then <unk>), and
        the LM wrapped to add the bonuses, with the lm_weight to use (module docstring)."""
        from flashlight.lib.text.decoder import ZeroLM
        from flashlight.lib.text.dictionary import Dictionary

        lines = Path(lexicon).read_text(encoding="utf-8").splitlines()
        words = list(dict.fromkeys(line.split("\t")[0].split(" ")[0] for line in lines if line.strip()))
        bonus: dict[str, float] = {}
        for phrase, b in hotwords.items():
            parts = phrase.split()
            for w in parts:
                bad = sorted({c for c in w if c not in self.tokens or c == " "})
                if bad:
                    raise ValueError(f"hotword {phrase!r}: {''.join(bad)!r} is not in the model's token set")
                if w not in words:
                    words.append(w)
                    lines.append(f"{w}\t{' '.join(w)}")
                bonus[w] = bonus.get(w, 0.0) + b / len(parts)
        (tmp / "lexicon.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "words.txt").write_text("\n".join([*words, "<unk>"]) + "\n", encoding="utf-8")
        word_dict = Dictionary(str(tmp / "words.txt"))  # the same indices ctc_decoder reads from words.txt
        if lm is not None and self.cfg.lm_weight > 0:
            try:
                from flashlight.lib.text.decoder.kenlm import KenLM
            except ImportError:
                from flashlight.lib.text.decoder import KenLM
            inner, weight = KenLM(lm, word_dict), self.cfg.lm_weight
        else:
            inner, weight = ZeroLM(), 1.0
        self._inner_lm = inner  # (kept alive beside the wrapper flashlight holds)
        self.hotwords = bonus
        wrapped = _hotword_lm(inner, {word_dict.get_index(w): b / weight for w, b in bonus.items()})
        return str(tmp / "lexicon.txt"), str(tmp / "words.txt"), wrapped, weight

    @classmethod
    def from_file(cls, decoder_json: str | os.PathLike, tokens: TokenSet) -> BeamSearchDecoder:
        """Build from a decoder.json; its lexicon and lm paths are relative to the file's directory."""
        path = Path(decoder_json)
        return cls(tokens, BeamConfig.load(path), base_dir=path.parent)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor | None = None) -> list[list[Hypothesis]]:
        """log_probs: (B, T, V) log-softmax outputs, blank at 0; lengths: (B,) valid frames (default: all T)."""
        if log_probs.ndim != 3 or log_probs.shape[-1] != len(self.token_list):
            raise ValueError(f"expected (B, T, {len(self.token_list)}) log-probabilities, got {tuple(log_probs.shape)}")
        x = log_probs.detach().to("cpu", torch.float32).contiguous()
        b, t, v = x.shape
        lens = [t] * b if lengths is None else [int(n) for n in lengths]
        out = []
        for i in range(b):
            # flashlight reads T x V floats from this address: row i of the contiguous batch.
            results = self._decoder.decoder.decode(x.data_ptr() + 4 * i * x.stride(0), lens[i], v)
            out.append(self._nbest(results, lens[i]))
        return out

    def _nbest(self, results, frames: int) -> list[Hypothesis]:
        best: dict[str, Hypothesis] = {}
        for r in results:
            hyp = self._hypothesis(r, frames)
            if hyp.text not in best or hyp.score > best[hyp.text].score:
                best[hyp.text] = hyp  # one entry per transcript: other alignments of it are not alternatives
        return sorted(best.values(), key=lambda h: -h.score)[: self.cfg.nbest]

    def _hypothesis(self, r, frames: int) -> Hypothesis:
        path = list(r.tokens)[1 : frames + 1]  # flashlight pads one silence frame on each side
        tokens, timesteps = [], []
        for f, out in enumerate(path):
            if out != 0 and (f == 0 or path[f - 1] != out):
                tokens.append(int(out) - 1)  # output index -> token-set id
                timesteps.append(f)
        if self.cfg.lexicon:
            words = [self._decoder.word_dict.get_entry(w) for w in r.words if w >= 0]
        else:
            words = self.tokens.decode(tokens).split()
        return Hypothesis(tokens=tokens, timesteps=timesteps, text=" ".join(words), score=r.score,
                          am_score=r.emittingModelScore, lm_score=r.lmScore)
