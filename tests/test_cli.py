"""The CLI's contract: version, fast help, one-line errors, and no traceback ever reaching the user."""

from __future__ import annotations

import subprocess
import sys
import time

from typer.testing import CliRunner

import autosr
from autosr.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"autosr {autosr.__version__}"


def test_help_is_fast_and_lists_every_command():
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "autosr.cli", "--help"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    for command in ("detect", "init", "train", "report", "demo", "presets"):
        assert command in result.stdout
    assert elapsed < 3.0  # the budget is 0.5 s on an idle box; CI boxes are shared, so leave slack


def test_unexpected_error_prints_a_log_path_not_a_traceback(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("something deep broke")

    monkeypatch.setattr("autosr.report.summary.report", boom)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert "unexpected ZeroDivisionError: something deep broke" in result.output
    assert "Traceback" not in result.output
    (log,) = tmp_path.glob("autosr-crash-*.log")  # a private file of its own, not a fixed shared name
    assert str(log) in result.output.replace("\n", "") and "Traceback" in log.read_text()
    assert log.stat().st_mode & 0o077 == 0


def test_presets_lists_real_parameter_counts():
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0 and "10,072" in result.output and "14,481,556" in result.output
    # realtime…pro with the published counts (frozen base values included) and their estimated memory
    assert "16,780" in result.output and "1,993,420" in result.output and "(est.)" not in result.output  # every preset measured on an H200


def test_error_messages_with_brackets_are_printed_as_they_are(tmp_path):
    # paths and other programs' errors may hold "[/…]", which rich would read as a closing tag
    missing = tmp_path / "runs[/old]" / "auto.yml"
    result = runner.invoke(app, ["train", str(missing)])
    assert result.exit_code == 2 and "runs[/old]" in result.output and "Traceback" not in result.output
