"""Model files in the safetensors format, through the ``safetensors`` package.

Writes are atomic (:func:`autosr.fsutil.atomic_write`): the file is serialized to bytes, then replaces
the old one whole. Reads of an unreadable, damaged or foreign file raise one :class:`AutosrError`
naming the file, never the library's own exception.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, save
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.fsutil import atomic_write


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _host_tensors(tensors: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    """CPU, contiguous tensors with no storage in common: what ``safetensors`` accepts."""
    out: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise AutosrRuntimeError(f"{path}: invalid tensor name {name!r} for safetensors")
        if not isinstance(t, Tensor) or t.layout != torch.strided:
            raise AutosrRuntimeError(f"{path}: {name!r} is not a dense tensor")
        t = t.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in storages:  # tied weights, views of one buffer: stored apart
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def save_safetensors(tensors: Mapping[str, Tensor], path: str | os.PathLike[str],
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (any device, any strides, shared storage allowed) to ``path`` atomically."""
    path = Path(path)
    meta = dict(metadata or {})
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise AutosrRuntimeError(f"{path}: safetensors metadata must map str to str, got {k!r}: {v!r}")
    try:
        data = save(_host_tensors(tensors, path), meta or None)
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise AutosrRuntimeError(f"{path}: cannot write these tensors as safetensors ({_first_line(e)})") from None
    return atomic_write(path, lambda f: f.write(data))


def _unreadable(path: Path, exc: Exception) -> AutosrError:
    if isinstance(exc, OSError):
        return AutosrError(f"{path}: cannot read the file ({exc.strerror or _first_line(exc)})",
                           "check the path and its permissions")
    reason = f"unsupported dtype {exc}" if isinstance(exc, KeyError) else _first_line(exc)
    return AutosrError(f"{path}: not a valid safetensors file ({reason})",
                       "the file may be truncated or of another format; save or export it again")


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """All tensors of a safetensors file, on the CPU, independent of the file."""
    path = Path(path)
    try:
        return load(path.read_bytes())
    except (OSError, SafetensorError, KeyError) as e:  # KeyError: a dtype this torch lacks
        raise _unreadable(path, e) from None


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Only the ``__metadata__`` mapping ({} when absent); reads the header, not the tensors."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (OSError, SafetensorError) as e:
        raise _unreadable(path, e) from None
