"""bench/record.py: a benchmark record is refused from a git tree with uncommitted changes unless --allow-dirty is
given, and then says so; BENCHMARKS.md shows the full commit, dirty records and withdrawn figures plainly."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import make_benchmarks_md  # noqa: E402
import record  # noqa: E402


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q")
    (r / "code.py").write_text("x = 1\n")
    git(r, "add", "code.py")
    git(r, "commit", "-q", "-m", "first")
    return r


def write(repo: Path, out: Path, allow_dirty: bool = False) -> dict:
    path = record.write_record("t", {"speedup": 1.5}, allow_dirty=allow_dirty, results_dir=out, repo=repo)
    return json.loads(path.read_text())


def test_clean_tree_record_has_full_commit(repo, tmp_path):
    r = write(repo, tmp_path / "out")
    assert r["git_commit"] == git(repo, "rev-parse", "HEAD") and len(r["git_commit"]) == 40
    assert r["dirty"] is False and "dirty_paths" not in r


@pytest.mark.parametrize("change", ["modified", "untracked", "staged"])
def test_dirty_tree_is_refused(repo, tmp_path, change, capsys):
    if change == "modified":
        (repo / "code.py").write_text("x = 2\n")
    elif change == "untracked":
        (repo / "new_module.py").write_text("y = 1\n")
    else:
        (repo / "staged.py").write_text("z = 1\n")
        git(repo, "add", "staged.py")
    with pytest.raises(SystemExit) as e:
        write(repo, tmp_path / "out")
    assert "uncommitted changes" in str(e.value) and "--allow-dirty" in str(e.value)
    assert not (tmp_path / "out" / "t.json").exists()


def test_allow_dirty_writes_a_record_marked_dirty(repo, tmp_path):
    (repo / "code.py").write_text("x = 2\n")
    r = write(repo, tmp_path / "out", allow_dirty=True)
    assert r["git_commit"] == git(repo, "rev-parse", "HEAD") + "-dirty"
    assert r["dirty"] is True and r["dirty_paths"] == ["code.py"]
    md = make_benchmarks_md.render([r])
    assert r["git_commit"] in md and "uncommitted changes" in md


def test_records_do_not_make_the_tree_dirty(repo, tmp_path):
    """Writing one record (bench/results/*.json) must not make the next benchmark in that clone refuse."""
    (repo / "bench" / "results").mkdir(parents=True)
    (repo / "bench" / "results" / "old.json").write_text("{}\n")
    r = write(repo, tmp_path / "out")
    assert r["dirty"] is False


def test_outside_git_is_refused(tmp_path):
    with pytest.raises(SystemExit):
        write(tmp_path, tmp_path / "out")


def test_parse_bench_args_refuses_before_the_run(repo, monkeypatch):
    monkeypatch.setattr(record, "REPO", repo)
    (repo / "code.py").write_text("x = 2\n")
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=1)
    with pytest.raises(SystemExit):
        record.require_clean_tree(False, repo)
    args = record.parse_bench_args(ap, ["--reps", "3", "--allow-dirty"])
    assert args.allow_dirty and args.reps == 3


def test_every_bench_script_uses_the_one_mechanism():
    """Each script that writes a record parses with parse_bench_args and passes allow_dirty to write_record."""
    scripts = [p for p in (REPO / "bench").glob("*.py") if "write_record(" in p.read_text() and p.name != "record.py"]
    assert len(scripts) >= 8
    for p in scripts:
        calls = [n for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Call)]
        names = {getattr(c.func, "id", None) for c in calls}
        assert "parse_bench_args" in names and "parse_args" not in {getattr(c.func, "attr", None) for c in calls}, p
        writes = [c for c in calls if getattr(c.func, "id", None) == "write_record"]
        assert writes and all(any(k.arg == "allow_dirty" for k in c.keywords) for c in writes), p


def test_benchmarks_md_renders_withdrawn_figures_as_withdrawn():
    base = {"name": "q", "title": "Q", "command": "python bench/q.py", "git_commit": "a" * 40, "dirty": False,
            "host": {}, "date": "2026-01-01"}
    nested = dict(base, figures={"attention": {"test_bound_nats": 88.13,
                                               "withdrawn": {"reason": "first 2,000 images are digits 0 and 1",
                                                             "iwae_bound_nats": 69.21}}})
    md = make_benchmarks_md.render([nested])
    assert "88.13" in md and "a" * 40 in md
    table = md.split("Withdrawn")[0]
    assert "69.21" not in table  # a withdrawn figure never appears in the figures table
    assert "first 2,000 images are digits 0 and 1" in md and "attention" in md.split("Withdrawn")[1]
    whole = dict(base, figures={}, withdrawn={"reason": "measured from a resumed run", "figures": {"ppl": 69.9}})
    md = make_benchmarks_md.render([whole])
    assert "measured from a resumed run" in md and "| figure | value |" not in md and "69.9" not in md


def test_a_list_of_runs_is_rendered_as_a_table_of_its_own():
    r = {"name": "scaling", "title": "t", "git_commit": "abc", "dirty": False,
         "figures": {"order": 4, "runs": [{"words": 1000, "seconds": 1.5}, {"words": 10000, "skipped": "too big"}]}}
    md = make_benchmarks_md.render([r])
    assert "| words | seconds | skipped |" in md
    assert "| 1000 | 1.5 |  |" in md and "| 10000 |  | too big |" in md
    assert "| runs |" not in md and "| order | 4 |" in md
