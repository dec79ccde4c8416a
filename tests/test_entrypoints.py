"""The ways to start autosr: ``python -m autosr`` (what ``torchrun -m autosr`` runs) as well as the script."""

from __future__ import annotations

import re
import subprocess
import sys

from autosr import __version__


def test_python_dash_m_autosr_runs_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "autosr", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"autosr {__version__}"


def test_python_dash_m_autosr_names_itself_autosr_in_help() -> None:
    done = subprocess.run([sys.executable, "-m", "autosr", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)  # rich may style it where colour is forced
    assert "Usage: autosr " in text and "__main__" not in text
