"""Text normalisation and token sets: the one place that decides what a transcript looks like.

Data prep, LM training and WER/CER scoring all call `normalize`, so a reference, a hypothesis and an LM sentence are
always compared in the same alphabet:

    >>> normalize("Dr. Smith paid $5.50 on Jan. 21st, 1999 -- café au lait isn't cheap!")
    "doctor smith paid five dollars fifty cents on january twenty first nineteen ninety nine cafe au lait isn't cheap"

Rules, in order:
  1. Unicode NFKC; curly quotes and primes become ', dashes become spaces; accents are stripped to ASCII letters
     (café -> cafe, straße -> strasse); letters with no ASCII form (Greek, CJK, ...) are dropped in step 6.
  2. Abbreviations are spelled out. Titles (mr, mrs, ms, dr, prof, ...) with or without a period; words that are also
     ordinary English words (Gen., Col., Rev., months, ...) only with a capital letter and a period. "St" and "Dr" are
     ambiguous: followed by a capitalised word they are "saint"/"doctor" (St. Paul, Dr. Who), otherwise
     "street"/"drive" (Baker St., Elm Dr.).
  3. Numbers are spelled out (American style, no "and"): currency ($ £ € with cents/pence and million/billion),
     percentages, times (3:05 pm -> three oh five p m), ordinals (21st), decades (1990s), simple fractions (3/4), years
     (a bare four-digit number from 1100 to 2099 reads as a year: 1999 -> nineteen ninety nine, 1900 -> nineteen
     hundred, 2005 -> two thousand five), decimals (3.14 -> three point one four), numbers with leading zeros digit by
     digit, everything else as a cardinal (1,254 -> one thousand two hundred fifty four).
  4. Case folding.
  5. Apostrophes survive only between two letters (don't, o'clock); leading/trailing ones and quote marks go.
  6. Everything outside [a-z' ] becomes a space; runs of spaces collapse.

Token sets. A `TokenSet` maps symbols to ids 0..len-1 in the order of its `tokens`. It holds no CTC blank: the model
owns that choice (index 0 with tokens shifted by one, or index len(tokens)) and must apply it the same way in the loss
and the decoder. Two sets ship here:
  - `TokenSet.characters()`: " " (word boundary), "'" and a-z, 28 symbols; a transcript is split into characters.
  - `TokenSet.phonemes()`: the 39 folded TIMIT phones (Lee & Hon 1989, as in Kaldi's phones.60-48-39.map), including
    "sil"; a transcript is a space-separated phone string. `TIMIT_61_TO_39` is the fold table. (CMUdict's 39 differ:
    they have ao and zh, TIMIT's 39 have dx and sil instead.)
`tokens.txt` holds one symbol per line in id order; the space symbol is written as "|" (the wav2letter/flashlight
convention, since a line holding one space does not survive editors). A file containing "|" is a character set,
otherwise a space-separated unit set.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------------------------------------------------------------
# Token sets

CHARACTERS: tuple[str, ...] = (" ", "'", *"abcdefghijklmnopqrstuvwxyz")
SPACE_SYMBOL = "|"  # how " " is written in tokens.txt

PHONES_39: tuple[str, ...] = (
    "iy", "ih", "eh", "ae", "ah", "uw", "uh", "aa", "ey", "ay", "oy", "aw", "ow", "er",
    "l", "r", "w", "y", "m", "n", "ng",
    "ch", "jh", "dh", "b", "d", "dx", "g", "p", "t", "k",
    "z", "v", "f", "th", "s", "hh", "sh", "sil",
)  # fmt: skip

# TIMIT's 61 phone labels -> the 39 scoring classes. None means "delete" (the glottal stop q).
TIMIT_61_TO_39: dict[str, str | None] = {
    "aa": "aa", "ae": "ae", "ah": "ah", "ao": "aa", "aw": "aw", "ax": "ah", "ax-h": "ah", "axr": "er", "ay": "ay",
    "b": "b", "bcl": "sil", "ch": "ch", "d": "d", "dcl": "sil", "dh": "dh", "dx": "dx", "eh": "eh", "el": "l",
    "em": "m", "en": "n", "eng": "ng", "epi": "sil", "er": "er", "ey": "ey", "f": "f", "g": "g", "gcl": "sil",
    "h#": "sil", "hh": "hh", "hv": "hh", "ih": "ih", "ix": "ih", "iy": "iy", "jh": "jh", "k": "k", "kcl": "sil",
    "l": "l", "m": "m", "n": "n", "ng": "ng", "nx": "n", "ow": "ow", "oy": "oy", "p": "p", "pau": "sil",
    "pcl": "sil", "q": None, "r": "r", "s": "s", "sh": "sh", "t": "t", "tcl": "sil", "th": "th", "uh": "uh",
    "uw": "uw", "ux": "uw", "v": "v", "w": "w", "y": "y", "z": "z", "zh": "sh",
}  # fmt: skip


def fold_timit_phones(phones: Iterable[str]) -> list[str]:
    """61 TIMIT labels -> 39 classes; q is deleted and runs of "sil" merge into one (a closure after a pause, `pau
    pcl p`, would otherwise give `sil sil p`, a repeat CTC can only emit with a blank in between)."""
    out: list[str] = []
    for phone in phones:
        if phone not in TIMIT_61_TO_39:
            raise ValueError(f"not a TIMIT phone: {phone!r}")
        folded = TIMIT_61_TO_39[phone]
        if folded is None or (folded == "sil" and out and out[-1] == "sil"):
            continue
        out.append(folded)
    return out


@dataclass(frozen=True)
class TokenSet:
    """An ordered symbol inventory; id i <-> tokens[i]. No blank (the model adds it).

    `split_on_space` False: every character of a transcript is a token (spaces included).
    `split_on_space` True: a transcript is whitespace-separated symbols (phones).
    """

    tokens: tuple[str, ...]
    split_on_space: bool = False

    def __post_init__(self) -> None:
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("duplicate symbols in token set")
        if not self.split_on_space and any(len(t) != 1 for t in self.tokens):
            raise ValueError("a character token set holds single characters only")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def characters(cls) -> TokenSet:
        return cls(CHARACTERS, split_on_space=False)

    @classmethod
    def phonemes(cls) -> TokenSet:
        return cls(PHONES_39, split_on_space=True)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._index

    def symbols(self, text: str) -> list[str]:
        return text.split() if self.split_on_space else list(text)

    def unknown(self, text: str) -> list[str]:
        """Symbols of `text` outside the set, each once, in order of first appearance."""
        seen: dict[str, None] = {}
        for s in self.symbols(text):
            if s not in self._index:
                seen.setdefault(s, None)
        return list(seen)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._index[s] for s in self.symbols(text)]
        except KeyError as e:
            raise ValueError(f"symbol {e.args[0]!r} is not in the token set (text: {text!r})") from None

    def decode(self, ids: Iterable[int]) -> str:
        symbols = [self.tokens[i] for i in ids]
        return " ".join(symbols) if self.split_on_space else "".join(symbols)

    def save(self, path: str | Path) -> None:
        lines = [SPACE_SYMBOL if t == " " else t for t in self.tokens]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> TokenSet:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
        if SPACE_SYMBOL in lines:
            return cls(tuple(" " if t == SPACE_SYMBOL else t for t in lines), split_on_space=False)
        return cls(tuple(lines), split_on_space=True)


def token_set(name: str) -> TokenSet:
    """'chars', 'phones', or a path to a tokens.txt."""
    if name in ("chars", "characters"):
        return TokenSet.characters()
    if name in ("phones", "phonemes"):
        return TokenSet.phonemes()
    return TokenSet.load(name)


# ---------------------------------------------------------------------------------------------------------------------
# Numbers

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}  # fmt: skip


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def cardinal(n: int) -> str:
    """123 -> 'one hundred twenty three'; numbers of 10**15 and above are read digit by digit."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n >= 10**15:
        return digits(str(n))
    if n < 1000:
        return " ".join(_below_thousand(n))
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += _below_thousand(n // value) + [name]
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal(n: int) -> str:
    """21 -> 'twenty first', 100 -> 'one hundredth', 12 -> 'twelfth'."""
    head, _, last = cardinal(n).rpartition(" ")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def year(n: int) -> str:
    """1999 -> 'nineteen ninety nine', 1900 -> 'nineteen hundred', 1905 -> 'nineteen oh five', 2005 -> 'two thousand
    five', 2024 -> 'twenty twenty four'."""
    if 2000 <= n <= 2009 or not 1000 <= n <= 9999:
        return cardinal(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return f"{cardinal(hi)} hundred"
    if lo < 10:
        return f"{cardinal(hi)} oh {cardinal(lo)}"
    return f"{cardinal(hi)} {cardinal(lo)}"


def digits(s: str) -> str:
    return " ".join(_ONES[int(c)] for c in s if c.isdigit())


def _plural(words: str) -> str:
    """'nineteen ninety' -> 'nineteen nineties' (decades), 'six' -> 'sixes'."""
    head, _, last = words.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith(("x", "s")):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}".strip()


def _number(text: str) -> str:
    """A matched number token (digits, optional thousands commas, optional decimals) in words."""
    whole, _, frac = text.replace(",", "").partition(".")
    if frac:
        return f"{cardinal(int(whole)) if whole else ''} point {digits(frac)}".strip()
    if len(whole) > 1 and whole.startswith("0"):
        return digits(whole)  # 007, 0800: identifiers, not quantities
    n = int(whole)
    if "," not in text and len(whole) == 4 and 1100 <= n <= 2099:
        return year(n)
    return cardinal(n)


_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}  # fmt: skip
_SCALE_WORDS = r"thousand|million|billion|trillion"


def _currency(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m["sym"]]
    amount, scale = m["amount"], m["scale"]
    if scale:  # $1.5 million -> one point five million dollars
        return f" {_number(amount)} {scale.lower()} {many} "
    whole, _, frac = amount.replace(",", "").partition(".")
    if frac and len(frac) != 2:
        return f" {_number(amount)} {many} "
    units, cents = int(whole or 0), int(frac or 0)
    parts = []
    if units or not cents:
        parts.append(f"{cardinal(units)} {one if units == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " " + " ".join(parts) + " "


def _time(m: re.Match) -> str:
    hour, minute, half = int(m["h"]), int(m["m"]), m["ampm"]
    words = cardinal(hour)
    if minute == 0:
        words += "" if half else " o'clock"
    elif minute < 10:
        words += f" oh {cardinal(minute)}"
    else:
        words += f" {cardinal(minute)}"
    if half:
        words += f" {half[0].lower()} m"
    return f" {words} "


def _fraction(m: re.Match) -> str:
    num, den = int(m["num"]), int(m["den"])
    if den == 2:
        name = "half" if num == 1 else "halves"
    elif den == 4:
        name = "quarter" if num == 1 else "quarters"
    else:
        name = ordinal(den) + ("" if num == 1 else "s")
    return f" {cardinal(num)} {name} "


def _decade(m: re.Match) -> str:
    n = m["n"]
    if len(n) == 2:  # 80s -> eighties
        return f" {_plural(cardinal(int(n)))} "
    return f" {_plural(_number(n))} "


_NUMBER_RULES: list[tuple[re.Pattern, object]] = [
    (re.compile(rf"(?P<sym>[$£€])\s?(?P<amount>{_NUM}|\.\d+)(?:\s*(?P<scale>{_SCALE_WORDS})\b)?", re.I), _currency),
    (re.compile(rf"(?P<n>{_NUM})\s?%"), lambda m: f" {_number(m['n'])} percent "),
    (re.compile(r"\b(?P<h>[0-2]?\d):(?P<m>[0-5]\d)\b(?:\s*(?P<ampm>[ap])\.?m\b\.?)?", re.I), _time),
    (re.compile(r"\b(?P<h>1[0-2]|[1-9])\s*(?P<ampm>[ap])\.?m\b\.?", re.I),
     lambda m: f" {cardinal(int(m['h']))} {m['ampm'].lower()} m "),
    (re.compile(r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)\b", re.I),
     lambda m: f" {ordinal(int(m['n'].replace(',', '')))} "),
    (re.compile(r"(?<![\w'])'?(?P<n>\d{2}|1[1-9]\d0|20[0-9]0)'?s\b"), _decade),
    (re.compile(r"\b(?P<num>\d{1,3})/(?P<den>[2-9]|10)\b(?!/)"), _fraction),
    (re.compile(r"#\s?(?=\d)"), lambda m: " number "),
    (re.compile(rf"(?:(?<=\s)|^)-(?P<n>{_NUM})\b"), lambda m: f" minus {_number(m['n'])} "),
    (re.compile(rf"(?<!\d)(?P<n>{_NUM}|(?<![\w.])\.\d+)"), lambda m: f" {_number(m['n'])} "),
]


def spell_numbers(text: str) -> str:
    for pattern, repl in _NUMBER_RULES:
        text = pattern.sub(repl, text)
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Abbreviations

# Expanded with or without a trailing period, any case: these are not English words on their own.
_TITLES = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "prof": "professor", "capt": "captain", "lt": "lieutenant",
    "sgt": "sergeant", "jr": "junior", "sr": "senior", "mt": "mount", "vs": "versus", "etc": "et cetera",
}  # fmt: skip
# Only as Capitalised. with a period: without one they are ordinary words (Rev, Gen, Mar, ...).
_PERIOD_ONLY = {
    "Gen": "general", "Col": "colonel", "Gov": "governor", "Rev": "reverend", "Hon": "honorable", "Ave": "avenue",
    "Rd": "road", "Blvd": "boulevard", "Jan": "january", "Feb": "february", "Mar": "march", "Apr": "april",
    "Aug": "august", "Sep": "september", "Sept": "september", "Oct": "october", "Nov": "november",
    "Dec": "december", "Approx": "approximately", "Dept": "department",
}  # fmt: skip
# Ambiguous: (meaning before a capitalised name, meaning otherwise).
_NAME_OR_PLACE = {"st": ("saint", "street"), "dr": ("doctor", "drive")}

_TITLE_RE = re.compile(r"\b(" + "|".join(_TITLES) + r")\b\.?", re.I)
_PERIOD_ONLY_RE = re.compile(r"\b(" + "|".join(_PERIOD_ONLY) + r")\.")
_NAME_OR_PLACE_RE = re.compile(r"\b((?i:st|dr))\b\.?(?=(\s+[A-Z])?)")
_LATIN_RE = [(re.compile(r"\be\.\s?g\.", re.I), " for example "), (re.compile(r"\bi\.\s?e\.", re.I), " that is ")]
_NUMBER_ABBREV_RE = re.compile(r"\bno\.\s?(?=\d)", re.I)  # No. 5; "no" alone is a word


def spell_abbreviations(text: str) -> str:
    for pattern, words in _LATIN_RE:
        text = pattern.sub(words, text)
    text = _NUMBER_ABBREV_RE.sub("number ", text)
    text = _PERIOD_ONLY_RE.sub(lambda m: _PERIOD_ONLY[m[1]] + " ", text)
    text = _TITLE_RE.sub(lambda m: _TITLES[m[1].lower()] + " ", text)

    def name_or_place(m: re.Match) -> str:
        before_name, otherwise = _NAME_OR_PLACE[m[1].lower()]
        return (before_name if m[2] else otherwise) + " "

    return _NAME_OR_PLACE_RE.sub(name_or_place, text)


# ---------------------------------------------------------------------------------------------------------------------
# Unicode, punctuation, the whole pipeline

_ASCII_MAP = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2033": '"',
    "\u2010": " ", "\u2011": " ", "\u2012": " ", "\u2013": " ", "\u2014": " ", "\u2015": " ", "\u2212": "-",
    "\u2044": "/", "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH", "ı": "i",
})  # fmt: skip
_MIXED_FRACTION_RE = re.compile(r"(?<=\d)(?=[\u00bc-\u00be\u2150-\u215e])")  # 5½: NFKC alone would give 51⁄2
_SYMBOL_WORDS = str.maketrans({"&": " and ", "@": " at "})
_OUTSIDE_RE = re.compile(r"[^a-z' ]+")
_LONE_APOSTROPHE_RE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES_RE = re.compile(r"\s+")


def strip_accents(text: str) -> str:
    """café -> cafe: decompose, drop combining marks, recompose (NFKC again so nothing else changes)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_MAP))
    return unicodedata.normalize("NFKC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def normalize(text: str) -> str:
    """Raw text -> lowercase words over the character token set (see the module docstring for the rules)."""
    text = _MIXED_FRACTION_RE.sub(" and ", text)
    text = strip_accents(unicodedata.normalize("NFKC", text)).translate(_SYMBOL_WORDS)
    text = spell_abbreviations(text)
    text = spell_numbers(text)
    text = text.casefold()
    text = _OUTSIDE_RE.sub(" ", text)
    text = _LONE_APOSTROPHE_RE.sub(" ", text)
    return _SPACES_RE.sub(" ", text).strip()


# ---------------------------------------------------------------------------------------------------------------------
# Sentences

# A boundary: . ! or ? plus any closing quotes/brackets, then whitespace, then something that can open a sentence.
_BOUNDARY_RE = re.compile(r"[.!?]+[\"'\u2019\u201d)\]]*\s+(?=[\"'\u2018\u201c(\[]*[A-Z0-9])")
_NO_BREAK_AFTER = {a.lower() for a in (*_TITLES, *_PERIOD_ONLY, *_NAME_OR_PLACE, "no")}


def split_sentences(text: str) -> list[str]:
    """Raw running text -> raw sentences (before normalisation, which removes the punctuation this needs). A period
    after an abbreviation (Mr. Smith) or an initial (J. R. Tolkien) is not a boundary."""
    text = _SPACES_RE.sub(" ", text).strip()
    sentences, start = [], 0
    for m in _BOUNDARY_RE.finditer(text):
        word = text[start : m.start()].rsplit(" ", 1)[-1].strip("\"'([")
        if text[m.start()] == "." and (word.lower() in _NO_BREAK_AFTER or (len(word) == 1 and word.isalpha())):
            continue
        sentences.append(text[start : m.end()].strip())
        start = m.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def word_count(sentence: str) -> int:
    return len(sentence.split())


def normalize_lines(lines: Sequence[str]) -> list[str]:
    """Normalise and de-duplicate, keeping first occurrences in order and dropping lines that end up empty."""
    seen: dict[str, None] = {}
    for line in lines:
        norm = normalize(line)
        if norm:
            seen.setdefault(norm, None)
    return list(seen)
