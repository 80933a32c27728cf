"""The parser's tables kept between runs (archdsl/frontend/text.py): read back when they are the user's
own plain data for this grammar, else built — silently, whatever the cache folder is like."""

from __future__ import annotations

import marshal
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from archdsl.frontend import text as T

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR = T.grammar_path().read_text(encoding="utf-8")
SPEC = (ROOT / "specs" / "gpt2_small.arch").read_text(encoding="utf-8")
BAD = "model m {\n  d_model = = 3\n}\n"


def parse(parser: object, text: str) -> object:
    T._COMMENTS.clear()
    tree = parser.parse(text, start="start")  # type: ignore[attr-defined]
    comments = list(T._COMMENTS)
    T._COMMENTS.clear()
    return tree, comments


def error(parser: object, text: str) -> tuple[str, int, int]:
    try:
        parser.parse(text, start="start")  # type: ignore[attr-defined]
    except Exception as e:
        return type(e).__name__, e.line, e.column  # type: ignore[attr-defined]
    raise AssertionError("parsed")


def test_tables_written_then_read_back_parse_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("ARCHDSL_NO_CACHE", raising=False)
    path = T.parser_cache(GRAMMAR)
    assert path is not None and path.parent == tmp_path / "archdsl" and not path.exists()
    if hasattr(os, "getuid"):
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    built = T.build_parser(GRAMMAR, path)  # builds, and keeps the tables
    assert path.exists() and not list(path.parent.glob("*.part"))
    read = T.build_parser(GRAMMAR, path)
    assert T._read_tables(path, {}) is not None  # it was read back, not built again
    assert parse(read, SPEC) == parse(built, SPEC) == parse(T.build_parser(GRAMMAR), SPEC)
    assert parse(read, SPEC)[1]  # comments still reach the callback
    assert error(read, BAD) == error(built, BAD)
    assert read.get_terminal("NAME").pattern.to_regexp() == built.get_terminal("NAME").pattern.to_regexp()


def test_no_cache_when_asked_or_without_a_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("ARCHDSL_NO_CACHE", "1")
    assert T.parser_cache(GRAMMAR) is None
    monkeypatch.delenv("ARCHDSL_NO_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    monkeypatch.setenv("HOME", "")
    assert T.parser_cache(GRAMMAR) is None


def test_unwritable_cache_file_builds_silently(tmp_path: Path) -> None:
    taken = tmp_path / "tables.marshal"
    taken.mkdir()  # a folder where the file would go: it can be neither read nor replaced
    parser = T.build_parser(GRAMMAR, taken)
    assert parse(parser, SPEC) == parse(T.build_parser(GRAMMAR), SPEC)
    assert taken.is_dir() and [p.name for p in tmp_path.iterdir()] == ["tables.marshal"]


def test_write_failure_is_silent(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "tables.marshal"  # cannot be written
    parser = T.build_parser(GRAMMAR, missing)
    assert not missing.exists() and parse(parser, SPEC)[0] is not None


@pytest.mark.parametrize(
    "content",
    [
        b"",  # empty
        b"\x00garbage",  # not marshal data
        marshal.dumps(({"not": "tables"}, {})),  # plain data, not a parser's
        marshal.dumps((compile("1", "x", "eval"), {})),  # not plain data: refused before use
    ],
)
def test_damaged_or_foreign_tables_are_rebuilt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tables.marshal"
    path.write_bytes(content)
    assert T._read_tables(path, {}) is None
    parser = T.build_parser(GRAMMAR, path)
    assert parse(parser, SPEC) == parse(T.build_parser(GRAMMAR), SPEC)
    assert T._read_tables(path, {}) is not None  # rewritten whole


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no file owners")
def test_tables_others_could_have_written_are_not_read(tmp_path: Path) -> None:
    other = 'start: "x"\nexpr: "y"\n'  # a parser of another grammar, valid tables
    path = tmp_path / "tables.marshal"
    T.build_parser(other, path)
    assert T._read_tables(path, {}) is not None
    path.chmod(0o666)  # anyone could have put it there
    assert T._read_tables(path, {}) is None
    parser = T.build_parser(GRAMMAR, path)  # this grammar's, built (and the file replaced)
    assert parse(parser, SPEC)[0] is not None


def test_check_runs_with_an_unusable_cache_home(tmp_path: Path) -> None:
    home = tmp_path / "cache"
    home.write_text("a file, not a folder")
    env = {**os.environ, "XDG_CACHE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "archdsl", "check", str(ROOT / "specs" / "tiny.arch")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stderr == "" and out.stdout.endswith("ok (tiny, decoder, 2 blocks)\n")
