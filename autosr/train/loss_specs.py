"""Option declarations for the loss types of ``pixel_losses`` and ``perceptual``, and their checks.

Each type declares its options as ``{key: Opt(default, kind, …)}``; ``losses.build_losses`` takes the
defaults from there and checks every value the config gives with :func:`check_option` (an unknown
key is refused there, as for every loss). Checks are per option, so one key name can mean different
things for different types (``alpha`` is a list for ``perceptualloss``, a number for ``ffloss``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autosr.errors import AutosrError


@dataclass(frozen=True)
class Opt:
    """One option: its default and what values it takes.

    kind: ``float`` | ``int`` | ``bool`` | ``choice`` | ``floats`` (list of numbers) | ``ints`` (list of
    integers) | ``weights`` (mapping of names to numbers). ``low``: the smallest allowed number
    (``above``: strictly above it). ``none_ok``: null (YAML ``~``) is accepted, meaning "the default
    rule" (traiNNer's ``None`` defaults).
    """

    default: Any
    kind: str
    low: float | None = 0.0
    above: bool = False
    choices: tuple[str, ...] = ()
    none_ok: bool = False


def _number(where: str, opt: Opt, value: object, integer: bool) -> float | int:
    if not isinstance(value, int | float) or isinstance(value, bool) or (integer and not float(value).is_integer()):
        what = "an integer" if integer else "a number"
        hint = "" if integer else "write floats so YAML reads them as numbers, e.g. 1.0e-6 (PyYAML reads 1e-6 as a string)"
        raise AutosrError(f"{where}: must be {what}, got {value!r}", hint)
    number = int(value) if integer else float(value)
    if opt.low is not None and (number <= opt.low if opt.above else number < opt.low):
        raise AutosrError(f"{where}: must be {'>' if opt.above else '≥'} {opt.low:g}, got {value!r}")
    return number


def check_option(where: str, opt: Opt, value: object) -> Any:
    """The value normalised (ints → floats where floats, lists → tuples), or an AutosrError."""
    if value is None and opt.none_ok:
        return None
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise AutosrError(f"{where}: must be true or false, got {value!r}")
        return value
    if opt.kind == "choice":
        text = value.lower() if isinstance(value, str) else value
        if text not in opt.choices:
            raise AutosrError(f"{where}: must be one of {', '.join(opt.choices)}, got {value!r}")
        return text
    if opt.kind in ("float", "int"):
        return _number(where, opt, value, opt.kind == "int")
    if opt.kind in ("floats", "ints"):
        if not isinstance(value, list | tuple) or not value:
            raise AutosrError(f"{where}: must be a non-empty list, got {value!r}", "e.g. [1.0, 0.5]")
        return tuple(_number(f"{where}[{i}]", opt, v, opt.kind == "ints") for i, v in enumerate(value))
    if opt.kind == "weights":
        if not isinstance(value, Mapping) or not value:
            raise AutosrError(f"{where}: must be a mapping of layer names to weights, got {value!r}",
                              "e.g. {conv1_2: 0.1, conv5_4: 1.0}")
        return {str(k): float(_number(f"{where}.{k}", opt, v, False)) for k, v in value.items()}
    raise AssertionError(opt.kind)
