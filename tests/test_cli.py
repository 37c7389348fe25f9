"""The command line: exit codes, canonical printing, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import graphc as gc
from graphc.cli import main
from tests.test_formats import TOY


@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    p = tmp_path / "toy.gc"
    p.write_text(TOY.replace("  %w", "  // the weight\n  %w"))
    return p


def test_verify_ok(toy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(toy_file)]) == 0
    assert "ok: @toy: 6 nodes, 2 outputs" in capsys.readouterr().out


def test_verify_problem_and_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    bad = tmp_path / "bad.gc"
    bad.write_text(TOY.replace("%0, %x", "%0, %q"))
    assert main(["verify", str(bad)]) == 1
    assert f"{bad}:5:16: error: undefined value %q" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.gc")]) == 2
    assert main(["verify", str(tmp_path)]) == 2
    (tmp_path / "bin.gc").write_bytes(b"\xff\xfe")
    assert main(["verify", str(tmp_path / "bin.gc")]) == 2
    with pytest.raises(SystemExit) as info:
        main(["verify"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2
    assert main([]) == 2


def test_fmt_prints_canonical_text_and_json(toy_file: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", str(toy_file)]) == 0
    assert capsys.readouterr().out == TOY
    assert main(["fmt", "--json", str(toy_file)]) == 0
    js = capsys.readouterr().out
    assert gc.to_text(gc.from_json(js)) == TOY
    j = toy_file.with_suffix(".json")
    j.write_text(js)
    assert main(["fmt", str(j)]) == 0
    assert capsys.readouterr().out == TOY


def test_fmt_output_is_atomic(toy_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.gc"
    out.write_text("precious\n")
    bad = tmp_path / "bad.gc"
    bad.write_text("graph @x {")
    assert main(["fmt", str(bad), "-o", str(out)]) == 2
    assert out.read_text() == "precious\n"
    assert main(["fmt", str(toy_file), "-o", str(out)]) == 0
    assert out.read_text() == TOY
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert "demo ok" in capsys.readouterr().out


def test_console_script_gives_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gc"
    bad.write_text("graph @g {\n  %0 = neg(%nothing) : f32[2]\n}\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", "verify", str(bad)],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{bad}:2:12: error: undefined value %nothing" in proc.stderr


def test_unwritable_output_is_a_clear_error(toy_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    assert main(["fmt", str(toy_file), "-o", str(missing / "x.gc")]) == 2
    assert main(["plan", str(toy_file), "--png", str(missing / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err or "No such file" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        main(["fuzz", "--examples", "-5"])
    assert info.value.code == 2
