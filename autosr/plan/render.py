"""Plan → traiNNer-redux YAML text through templates/, every value with its provenance comment.

The template fixes the document's layout and section comments; `section(prefix)` writes the
plan's keys under a prefix, nested, one value per line with `# auto: <reason>` or `# set`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jinja2
import yaml

from autosr import __version__
from autosr.plan.planner import Plan
from autosr.resources import data_dir

TEMPLATE = "trainner.yml.j2"
_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./\\:~+-]*")


def scalar(value: Any) -> str:
    """One YAML scalar or flow list that PyYAML loads back to the same value and type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {scalar(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.fullmatch(text) and ": " not in text and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid YAML double-quoted one


def _float(x: float) -> str:
    """Always a float to PyYAML: it reads `5e-4` as text, so write `5.0e-4`."""
    if not math.isfinite(x):
        return ".nan" if math.isnan(x) else (".inf" if x > 0 else "-.inf")
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        text = repr(x)
        return text if ("." in text or "e" in text) else text + ".0"
    mantissa, exponent = f"{x:.6e}".split("e")
    mantissa = mantissa.rstrip("0")
    mantissa = mantissa + "0" if mantissa.endswith(".") else mantissa
    return f"{mantissa}e{exponent[0]}{int(exponent[1:])}"


class _Writer:
    """Writes plan keys as nested YAML, remembering what has been written."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        tree_keys = _flat_keys(plan.tree())
        keys = [k for k in plan.values if k in tree_keys]  # upstream flavour drops fork keys
        self.keys = _grouped(keys)
        self.done: set[str] = set()

    def section(self, prefix: str) -> str:
        keys = [k for k in self.keys if (k == prefix or k.startswith(prefix + ".")) and k not in self.done]
        return self._lines(keys)

    def rest(self) -> str:
        return self._lines([k for k in self.keys if k not in self.done])

    def _lines(self, keys: list[str]) -> str:
        lines: list[str] = []
        opened: list[str] = []
        for key in keys:
            parts = key.split(".")
            common = 0
            while common < min(len(opened), len(parts) - 1) and opened[common] == parts[common]:
                common += 1
            opened = opened[:common]
            for depth in range(common, len(parts) - 1):
                lines.append("  " * depth + parts[depth] + ":")
                opened.append(parts[depth])
            lines.extend(self._leaf(key, parts[-1], len(parts) - 1))
            self.done.add(key)
        return "\n".join(lines)

    def _leaf(self, key: str, name: str, depth: int) -> list[str]:
        decision = self.plan.values[key]
        note = "# set" if decision.source == "set" else f"# auto: {decision.reason}"
        pad = "  " * depth
        value = decision.value
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out = [f"{pad}{name}:  {note}"]
            for item in value:
                first = True
                for k, v in item.items():
                    out.append(f"{pad}  {'- ' if first else '  '}{k}: {scalar(v)}")
                    first = False
            return out
        return [f"{pad}{name}: {scalar(value)}  {note}"]


def _grouped(keys: list[str]) -> list[str]:
    """Plan order, except that a key added later (a --set) joins its parent mapping's block:
    writing `train:` twice would make YAML keep only the second block."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        parts = key.split(".")
        for depth in range(1, len(parts) + 1):
            first.setdefault(".".join(parts[:depth]), index)

    def rank(key: str) -> tuple[int, ...]:
        parts = key.split(".")
        return tuple(first[".".join(parts[:depth])] for depth in range(1, len(parts) + 1))

    return sorted(keys, key=rank)


def _flat_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in tree.items():
        key = f"{prefix}{k}"
        keys.add(key)
        if isinstance(v, dict) and v:
            keys |= _flat_keys(v, key + ".")
    return keys


def render(plan: Plan, command: str = "autosr init") -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    writer = _Writer(plan)
    text = env.get_template(TEMPLATE).render(
        section=writer.section,
        rest=writer.rest,
        version=__version__,
        command=command,
        flavor=plan.flavor,
        notes=plan.notes,
    )
    return re.sub(r"\n{3,}", "\n\n", text)
