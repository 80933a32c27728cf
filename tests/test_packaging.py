"""Packaging promises: check/report never import torch; the wheel ships the grammar and works from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT


def test_check_report_and_compare_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        f"OUT = {str(tmp_path / 'page.html')!r}\n"
        "from archdsl.cli import main\n"
        "assert main(['check', 'specs/gpt2_small.arch', 'specs/gpt2_small.yaml']) == 0\n"
        "assert main(['report', 'specs/gpt2_small.arch', '--format', 'json']) == 0\n"
        "assert main(['report', 'specs/gpt2_small.arch', '--seq', '256,1k', '--format', 'md']) == 0\n"
        "assert main(['report', 'specs/llama3_8b.arch', '--seq', '4k', '--format', 'html', '-o', OUT]) == 0\n"
        "assert main(['compare', 'specs/gpt2_small.arch', 'specs/gpt2_small_linear.arch', '--format', 'html',"
        " '-o', OUT]) == 0\n"
        "import archdsl\n"
        "archdsl.analyze(archdsl.load('specs/bert_like.arch'))\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "assert not bad, bad[:5]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_wheel_ships_grammar_and_runs_from_it(tmp_path: Path) -> None:
    """Build the wheel, install it into a bare folder, and load a spec through the packaged grammar."""
    wheels = tmp_path / "wheels"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    [whl] = wheels.glob("archdsl-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    assert "archdsl/grammar/archdsl.lark" in names
    assert "archdsl/kinds/attention_nn.py" in names and "archdsl/lower/model_nn.py" in names

    site = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(whl)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    code = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "import archdsl\n"
        f"assert archdsl.__file__.startswith({str(site)!r}), archdsl.__file__\n"
        "from archdsl.frontend.text import grammar_path\n"
        f"assert str(grammar_path()).startswith({str(site)!r}), grammar_path()\n"
        f"r = archdsl.analyze(archdsl.load({str(ROOT / 'specs' / 'gpt2_small.arch')!r}), seq_len=1024)\n"
        "assert r.params_total == 124439808\n"
        "from archdsl.cli import main\n"
        f"assert main(['compile', {str(ROOT / 'specs' / 'tiny.arch')!r}, '-o', 'm.py']) == 0\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "class Transformer" in (tmp_path / "m.py").read_text()
