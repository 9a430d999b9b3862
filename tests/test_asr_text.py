"""Normalisation rules and token sets (speechdraw/asr/text.py)."""

from __future__ import annotations

import pytest

from speechdraw.asr.text import (
    CHARACTERS,
    PHONES_39,
    TIMIT_61_TO_39,
    TokenSet,
    cardinal,
    fold_timit_phones,
    normalize,
    normalize_lines,
    ordinal,
    split_sentences,
    token_set,
)


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (21, "twenty one"), (40, "forty"), (100, "one hundred"),
    (105, "one hundred five"), (123, "one hundred twenty three"), (1001, "one thousand one"),
    (20_000, "twenty thousand"), (1_000_000, "one million"),
    (2_500_000_017, "two billion five hundred million seventeen"), (-3, "minus three"),
])  # fmt: skip
def test_cardinal(n, words):
    assert cardinal(n) == words


@pytest.mark.parametrize("n, words", [
    (1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"), (9, "ninth"), (11, "eleventh"),
    (12, "twelfth"), (20, "twentieth"), (21, "twenty first"), (100, "one hundredth"), (101, "one hundred first"),
])  # fmt: skip
def test_ordinal(n, words):
    assert ordinal(n) == words


@pytest.mark.parametrize("raw, expected", [
    ("123 men", "one hundred twenty three men"),
    ("1,254 sheep", "one thousand two hundred fifty four sheep"),
    ("in 1999", "in nineteen ninety nine"),
    ("in 1900 and 1905", "in nineteen hundred and nineteen oh five"),
    ("in 2005 and 2024", "in two thousand five and twenty twenty four"),
    ("1066", "one thousand sixty six"),  # below 1100: not read as a year
    ("the 21st and 22nd and 3rd", "the twenty first and twenty second and third"),
    ("pi is 3.14", "pi is three point one four"),
    ("$5", "five dollars"), ("$1", "one dollar"), ("$5.50", "five dollars fifty cents"), ("$0.99", "ninety nine cents"),
    ("£2.50", "two pounds fifty pence"), ("€10", "ten euros"), ("$1.5 million", "one point five million dollars"),
    ("50% off", "fifty percent off"), ("3.5 %", "three point five percent"),
    ("at 3:05 pm", "at three oh five p m"), ("10:00", "ten o'clock"), ("12:30 a.m.", "twelve thirty a m"),
    ("the 1990s", "the nineteen nineties"), ("the '80s", "the eighties"),
    ("3/4 cup", "three quarters cup"), ("1/2", "one half"), ("2/3", "two thirds"), ("5\u00bd", "five and one half"),
    ("#1 and No. 5", "number one and number five"), ("agent 007", "agent zero zero seven"),
])  # fmt: skip
def test_numbers(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Mr. and Mrs. Smith", "mister and missus smith"),
    ("Dr. Jones lives on Elm Dr.", "doctor jones lives on elm drive"),  # the rule: before a name -> title
    ("St. Paul walked down Baker St. today", "saint paul walked down baker street today"),
    ("ST. JOHN", "saint john"),
    ("Prof. Xavier vs. Gen. Lee, etc.", "professor xavier versus general lee et cetera"),
    ("e.g. apples, i.e. fruit", "for example apples that is fruit"),
    ("Jan. 5th", "january fifth"),
    ("no way", "no way"), ("the Rev of an engine", "the rev of an engine"),  # ordinary words stay
])  # fmt: skip
def test_abbreviations(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Café crème, naïve façade", "cafe creme naive facade"),
    ("Straße Æsop Ørsted", "strasse aesop orsted"),
    ("ＦＵＬＬ ｗｉｄｔｈ ﬁne", "full width fine"),  # NFKC: full-width letters, the fi ligature
    ("Ελλάδα and 東京 are dropped", "and are dropped"),
    ("He said: \u201cWell\u2014maybe\u2026\u201d", "he said well maybe"),
    ("Tom & Jerry @ home", "tom and jerry at home"),
])  # fmt: skip
def test_unicode(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Don\u2019t stop", "don't stop"),  # curly apostrophe -> '
    ("at six o'clock", "at six o'clock"),
    ("'Tis the boys' toys", "tis the boys toys"),  # leading and trailing apostrophes go
    ("\u2018quoted\u2019 and 'single'", "quoted and single"),
    ("rock 'n' roll", "rock n roll"),
    ("it''s", "it s"),
])  # fmt: skip
def test_apostrophes(raw, expected):
    assert normalize(raw) == expected


def test_output_stays_in_character_set_and_is_idempotent():
    messy = ["\tHELLO,   World!!  ", "\u00bfQu\u00e9 tal? \u00a1Bien!", "x = 42 + 7% - $3", "--- ___ ***", "",
             "A.B.C. 1.2.3 v2.0", "10-20 people; 5\u00bd miles", "\u2018Hi\u2019 \u201cthere\u201d \u00ab yes \u00bb"]
    chars = set(CHARACTERS)
    for text in messy:
        once = normalize(text)
        assert set(once) <= chars, (text, once)
        assert once == once.strip() and "  " not in once
        assert normalize(once) == once


def test_split_sentences_respects_abbreviations_and_initials():
    text = 'Mr. Smith went to Washington. He said, "Hello!" Then J. R. Tolkien wrote. Is it? Yes. St. Paul came.'
    assert split_sentences(text) == [
        "Mr. Smith went to Washington.", 'He said, "Hello!"', "Then J. R. Tolkien wrote.", "Is it?", "Yes.",
        "St. Paul came.",
    ]  # fmt: skip


def test_normalize_lines_dedupes_after_normalising():
    assert normalize_lines(["Hello, World!", "hello world", "", "!!!", "Goodbye."]) == ["hello world", "goodbye"]


def test_character_token_set_roundtrip(tmp_path):
    chars = TokenSet.characters()
    assert len(chars) == 28 and chars.tokens[0] == " " and chars.tokens[1] == "'"
    ids = chars.encode("don't go")
    assert ids == [chars.tokens.index(c) for c in "don't go"]
    assert chars.decode(ids) == "don't go"
    assert chars.unknown("abc1d!1") == ["1", "!"]
    with pytest.raises(ValueError, match="'X'"):
        chars.encode("aXb")
    chars.save(tmp_path / "tokens.txt")
    lines = (tmp_path / "tokens.txt").read_text().splitlines()
    assert lines[0] == "|" and lines[2] == "a" and len(lines) == 28  # space written as |
    assert TokenSet.load(tmp_path / "tokens.txt") == chars
    assert token_set(str(tmp_path / "tokens.txt")) == chars and token_set("chars") == chars


def test_phoneme_token_set_roundtrip(tmp_path):
    phones = TokenSet.phonemes()
    assert len(phones) == 39 and phones.split_on_space
    ids = phones.encode("sil dh ah k ae t sil")
    assert phones.decode(ids) == "sil dh ah k ae t sil" and len(ids) == 7
    assert phones.unknown("sil ax q sil") == ["ax", "q"]  # unfolded labels are not in the set
    phones.save(tmp_path / "phones.txt")
    assert TokenSet.load(tmp_path / "phones.txt") == phones
    assert token_set("phones") == phones


def test_timit_fold_table():
    assert len(TIMIT_61_TO_39) == 61
    assert {v for v in TIMIT_61_TO_39.values() if v is not None} == set(PHONES_39)
    assert TIMIT_61_TO_39["ao"] == "aa" and TIMIT_61_TO_39["zh"] == "sh" and TIMIT_61_TO_39["ix"] == "ih"
    assert TIMIT_61_TO_39["q"] is None
    # h# -> sil; q deleted; pau + pcl merge into one sil; ax -> ah; en -> n
    assert fold_timit_phones(["h#", "q", "ax", "pau", "pcl", "p", "en", "h#"]) == ["sil", "ah", "sil", "p", "n", "sil"]
    with pytest.raises(ValueError):
        fold_timit_phones(["xx"])
