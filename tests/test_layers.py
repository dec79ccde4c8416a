"""The package's layers, read from the source (AST, nothing imported): arrows run one way only.

    base (autosr/*.py)  <  archs/  <  train/  <  schedule/, use/, plan/  <  report/  <  the commands

No stage imports a stage above it, the shared base imports no stage, and the runtime (train/,
schedule/) imports no autosr module inside a function — there is no cycle to dodge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autosr"
COMMANDS = {"cli", "__main__", "demo", "init_cmd", "train_cmd"}  # the command line and the composition roots
STAGES = ("archs", "train", "schedule", "use", "plan", "report")
# What each layer may import (besides the shared base, which everyone may).
ALLOWED = {
    "base": set(),
    "archs": {"archs"},
    "train": {"archs", "train"},
    "schedule": {"train", "schedule"},
    "use": {"archs", "train", "use"},
    "plan": {"archs", "train", "plan"},
    "report": {"train", "use", "report"},
}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:
        return "command" if rel.stem in COMMANDS else "base"
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported autosr module, inside a function?) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend([(a.name, in_function) for a in child.names if a.name.split(".")[0] == "autosr"])
            elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "autosr":
                # `from autosr.train import checkpoint` names a module too
                found.extend([(f"{child.module}.{a.name}", in_function) for a in child.names])
            visit(child, inner)

    visit(tree, False)
    return found


def _target_layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    if len(parts) > 1 and parts[1] in COMMANDS:
        return "command"
    return "base"


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_arrow_runs_back_up(path: Path) -> None:
    layer = _layer(path)
    if layer == "command":
        return
    for module, _ in _imports(path):
        target = _target_layer(module)
        assert target == "base" or target in ALLOWED[layer], f"{path.relative_to(PACKAGE)} ({layer}) imports {module} ({target})"


@pytest.mark.parametrize("path", [p for p in SOURCES if _layer(p) in ("train", "schedule")],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_runtime_imports_no_autosr_module_inside_a_function(path: Path) -> None:
    inside = [module for module, in_function in _imports(path) if in_function]
    assert not inside, f"{path.relative_to(PACKAGE)} imports {inside} inside a function"


def test_the_rule_catches_what_it_is_for(tmp_path: Path) -> None:
    """The checker itself: a late import and an upward arrow are both seen."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom autosr.schedule import registry\n\ndef f():\n    from autosr.use import model_file\n")
    assert _imports(sample) == [("autosr.schedule.registry", False), ("autosr.use.model_file", True)]
    assert _target_layer("autosr.use.model_file") == "use" and _target_layer("autosr.errors") == "base"
    assert "schedule" not in ALLOWED["train"] and "use" not in ALLOWED["train"] and "report" not in ALLOWED["train"]
