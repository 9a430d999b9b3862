"""data_prep/lm_text.py on miniature sources laid out like the real ones: WordNet data.* files (licence header, synset
lines with glosses and quoted examples), a chatterbot-corpus wheel, a dictd Devil's Dictionary, a synthetic corpus."""

from __future__ import annotations

import gzip
import json
import zipfile

import pytest
from asr_fixtures import prep

lm_text = prep("lm_text")

WORDNET_HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
DATA_NOUN = WORDNET_HEADER + (
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is perceived "
    "or known or inferred to have its own distinct existence (living or nonliving)  \n"
    "07555863 13 n 02 breakfast 0 002 @ 07573696 n 0000 + 01168961 v 0101 | the first meal of the day (usually in the "
    'morning); "I had eggs for breakfast"; "Dr. Smith ate 2 eggs."  \n'
)
DATA_VERB = WORDNET_HEADER + (
    "00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 021 * 00005041 v 0000 02 + 02 00 + 08 00 | draw "
    'air into, and expel out of, the lungs; "I can breathe better when the air is clean"; "the quality of mercy is not '
    'strained"--Shakespeare  \n'
)
CHATTER_GREETINGS = """categories:
- greetings
conversations:
- - Good morning, how are you?
  - I am doing well, how about you?
- - Hello
  - "Hi there! Nice to see you."
  - |
    Could I borrow a cup of sugar?
"""
CHATTER_CODING = """categories:
- coding
conversations:
- - Write a loop
  - for i in range ten print i
"""
DEVIL = """00-database-short
     The Devil's Dictionary (1881-1906)
No additional restrictions are claimed.

                              PREFACE

This book was begun in a weekly paper.

ABSURDITY, n.  A statement or belief manifestly inconsistent with
one's own opinion.

ACADEMY, n.  [from {ACADEME}]   A modern school where football is
taught.

    "So I am, so I am," said the scapegrace caught --
        "But not, sir, a bigoted one."
                                                                  G.J.
"""
BIBLE = ["in the beginning god created the heavens and the earth", "i can breathe better when the air is clean",
         "jesus wept"]  # fmt: skip
DEV = ["i can breathe better when the air is clean"]  # also a WordNet example: must go from every source
TEST = ["hi there nice to see you"]  # also a chatterbot line
TRAIN = ["jesus wept"]  # heard in training audio: may stay in the LM text


@pytest.fixture
def inputs(tmp_path):
    wn = tmp_path / "wordnet"
    wn.mkdir()
    for name, text in [("data.noun", DATA_NOUN), ("data.verb", DATA_VERB), ("data.adj", WORDNET_HEADER),
                       ("data.adv", WORDNET_HEADER)]:  # fmt: skip
        (wn / name).write_text(text)
    cache = tmp_path / "cache"
    cache.mkdir()
    with zipfile.ZipFile(cache / "chatterbot_corpus-1.3.3-py2.py3-none-any.whl", "w") as z:
        z.writestr("chatterbot_corpus/data/english/greetings.yml", CHATTER_GREETINGS)
        z.writestr("chatterbot_corpus/data/english/coding.yml", CHATTER_CODING)
        z.writestr("chatterbot_corpus/data/spanish/greetings.yml", "conversations:\n- - Hola amigo mio\n")
    devil = tmp_path / "devil.dict.dz"
    devil.write_bytes(gzip.compress(DEVIL.encode()))
    synth = tmp_path / "synth"
    synth.mkdir()
    (synth / "lm_train.txt").write_text("".join(s + "\n" for s in BIBLE))
    for name, sentences in [("dev", DEV), ("test", TEST), ("train", TRAIN)]:
        (synth / f"{name}.jsonl").write_text("".join(json.dumps({"audio": "a.flac", "text": s}) + "\n"
                                                     for s in sentences))  # fmt: skip
    args = ["--synth", str(synth), "--wordnet", str(wn), "--cache", str(cache), "--devil", str(devil)]
    return tmp_path, args


def test_wordnet_examples_and_definitions(inputs):
    tmp, _ = inputs
    assert list(lm_text.wordnet_examples(tmp / "wordnet")) == [
        "I had eggs for breakfast", "Dr. Smith ate 2 eggs.", "I can breathe better when the air is clean",
        "the quality of mercy is not strained",
    ]  # fmt: skip
    assert list(lm_text.wordnet_definitions(tmp / "wordnet")) == [
        "that which is perceived or known or inferred to have its own distinct existence (living or nonliving)",
        "the first meal of the day (usually in the morning)", "draw air into, and expel out of, the lungs",
    ]  # fmt: skip


def test_chatterbot_and_devil_extraction(inputs):
    tmp, _ = inputs
    wheel = tmp / "cache" / "chatterbot_corpus-1.3.3-py2.py3-none-any.whl"
    assert list(lm_text.chatterbot_lines(wheel)) == [  # English only, the coding file left out
        "Good morning, how are you?", "I am doing well, how about you?", "Hello", "Hi there! Nice to see you.",
        "Could I borrow a cup of sugar?",
    ]  # fmt: skip
    assert list(lm_text.devil_paragraphs(tmp / "devil.dict.dz")) == [  # header, verse, signature, headwords gone
        "This book was begun in a weekly paper.",
        "A statement or belief manifestly inconsistent with one's own opinion.",
        "A modern school where football is taught.",
    ]  # fmt: skip


def test_build_removes_evaluation_sentences_and_records_licences(inputs, capsys):
    tmp, args = inputs
    out = tmp / "lm"
    assert lm_text.main([*args, "--out", str(out), "--heldout-every", "1000"]) == 0
    lines = (out / "lm_train.txt").read_text().splitlines()
    assert lines == [
        "in the beginning god created the heavens and the earth", "jesus wept",  # bible, minus the dev sentence
        "i had eggs for breakfast", "doctor smith ate two eggs", "the quality of mercy is not strained",
        "good morning how are you", "i am doing well how about you", "hello", "could i borrow a cup of sugar",
        "that which is perceived or known or inferred to have its own distinct existence living or nonliving",
        "the first meal of the day usually in the morning", "draw air into and expel out of the lungs",
        "this book was begun in a weekly paper", "a statement or belief manifestly inconsistent with one's own opinion",
        "a modern school where football is taught",
    ]  # fmt: skip
    manifest = json.loads((out / "sources.json").read_text())
    rows = {s["source"]: s for s in manifest["sources"]}
    assert list(rows) == ["bible", "wordnet_examples", "chatterbot", "wordnet_glosses", "devil"]
    assert rows["wordnet_examples"]["licence"].startswith("WordNet 3.0 licence")
    assert rows["chatterbot"]["licence"] == "BSD-3-Clause" and rows["devil"]["licence"].startswith("public domain")
    assert all(r["licence"] and r["origin"] for r in rows.values())
    assert {n: r["removed_evaluation"] for n, r in rows.items()} == {
        "bible": 1, "wordnet_examples": 1, "chatterbot": 1, "wordnet_glosses": 0, "devil": 0}  # fmt: skip
    assert rows["chatterbot"]["lines"] == 4 and rows["chatterbot"]["words"] == 20
    assert manifest["overlap_with_lm_train"] == {"evaluation": 0, "everyday": 0}
    assert manifest["lm_train"] == {"lines": len(lines), "words": sum(len(s.split()) for s in lines)}
    assert (out / "sources" / "devil.txt").read_text().splitlines() == lines[-3:]
    assert "overlap with the LM text 0" in capsys.readouterr().out


def test_everyday_heldout_is_disjoint_and_output_deterministic(inputs):
    tmp, args = inputs
    a, b = tmp / "a", tmp / "b"
    assert lm_text.main([*args, "--out", str(a), "--heldout-every", "2", "--heldout-min-words", "1"]) == 0
    assert lm_text.main([*args, "--out", str(b), "--heldout-every", "2", "--heldout-min-words", "1"]) == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert not list(a.rglob("*.tmp"))
    heldout = (a / "heldout" / "everyday_dev.txt").read_text().splitlines() + (
        a / "heldout" / "everyday_test.txt").read_text().splitlines()
    train = set((a / "lm_train.txt").read_text().splitlines())
    assert heldout and not set(heldout) & train
    everyday_pool = {"i had eggs for breakfast", "doctor smith ate two eggs", "the quality of mercy is not strained",
                     "good morning how are you", "i am doing well how about you", "hello",
                     "could i borrow a cup of sugar"}  # fmt: skip
    assert set(heldout) <= everyday_pool  # only WordNet examples and chatterbot lines are held out
    assert everyday_pool - set(heldout) <= train


def test_missing_source_is_one_clear_line(inputs, capsys):
    tmp, args = inputs
    (tmp / "devil.dict.dz").unlink()
    assert lm_text.main([*args, "--out", str(tmp / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "devil.dict.dz: not found" in err[0] and "dict-devil" in err[0]
    assert lm_text.main([*args, "--out", str(tmp / "x"), "--sources", "bible,wordnet_examples"]) == 0
    with pytest.raises(SystemExit) as e:
        lm_text.main([*args, "--out", str(tmp / "x"), "--sources", "bible,novels"])
    assert e.value.code == 2
