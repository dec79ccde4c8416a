"""The safetensors file format, read and written without the safetensors package.

Layout: an unsigned 64-bit little-endian header length N, then N bytes of UTF-8 JSON, then the raw
tensor bytes. The JSON maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the start of the data, which the tensors cover without gaps) and may hold
``"__metadata__"``: a str → str mapping. The header is padded with spaces so that the data starts on
an 8-byte boundary. Tensor bytes are little-endian and C-contiguous.

Files are written through :func:`autosr.fsutil.atomic_write`.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.fsutil import atomic_write

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _code, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"),
                     ("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        DTYPES[_code] = getattr(torch, _attr)
_CODES = {dtype: code for code, dtype in DTYPES.items()}

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit


# ----------------------------------------------------------------------------- writing
def _check_inputs(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None) -> None:
    if sys.byteorder != "little":
        raise AutosrRuntimeError("safetensors_io supports little-endian machines only")
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise AutosrRuntimeError(f"safetensors: invalid tensor name {name!r}")
        if not isinstance(t, Tensor) or t.layout != torch.strided:
            raise AutosrRuntimeError(f"safetensors: {name!r} is not a dense tensor")
        if t.dtype not in _CODES:
            raise AutosrRuntimeError(f"safetensors: {name!r} has unsupported dtype {t.dtype}")
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise AutosrRuntimeError(f"safetensors metadata must map str to str, got {k!r}: {v!r}")


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _header_bytes(tensors: Mapping[str, Tensor], names: list[str], metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in names:
        t = tensors[name]
        header[name] = {"dtype": _CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + _nbytes(t)]}
        offset += _nbytes(t)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)  # data starts 8-byte aligned (8-byte prefix + padded header)


def _raw_bytes(t: Tensor) -> memoryview:
    # One tensor at a time on the host: writing never holds a second copy of the whole model.
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def save_safetensors(tensors: Mapping[str, Tensor], path: str | os.PathLike[str],
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (any device, any layout of strides) to ``path`` atomically."""
    _check_inputs(tensors, metadata)
    names = sorted(tensors)
    header = _header_bytes(tensors, names, metadata)

    def write(f: BinaryIO) -> None:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for name in names:
            f.write(_raw_bytes(tensors[name]))

    return atomic_write(path, write)


# ----------------------------------------------------------------------------- reading
def _bad(path: Path, reason: str) -> AutosrError:
    return AutosrError(f"{path}: not a valid safetensors file ({reason})",
                       "the file may be truncated or of another format; save or export it again")


def _parse_entry(path: Path, name: str, info: object) -> tuple[torch.dtype, list[int], int, int]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"entry {name!r} needs exactly dtype, shape, data_offsets")
    dtype = DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    shape, offsets = info["shape"], info["data_offsets"]
    if dtype is None:
        raise _bad(path, f"{name!r} has unsupported dtype {info['dtype']!r}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _bad(path, f"{name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise _bad(path, f"{name!r} has invalid data_offsets {offsets!r}")
    numel = 1
    for s in shape:
        numel *= s
    if offsets[1] - offsets[0] != numel * torch.empty((), dtype=dtype).element_size():
        raise _bad(path, f"{name!r}: data_offsets do not match its shape and dtype")
    return dtype, shape, offsets[0], offsets[1]


def _read_header(f: BinaryIO, path: Path, file_size: int) -> tuple[dict[str, object], int]:
    prefix = f.read(8)
    if len(prefix) != 8:
        raise _bad(path, "shorter than 8 bytes")
    (n,) = struct.unpack("<Q", prefix)
    if n > MAX_HEADER_BYTES or 8 + n > file_size:
        raise _bad(path, f"header length {n} does not fit the file of {file_size} bytes")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    return header, 8 + n


def _metadata(path: Path, header: dict[str, object]) -> dict[str, str]:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _bad(path, "__metadata__ must map strings to strings")
    return meta


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Only the ``__metadata__`` mapping ({} when absent)."""
    path = Path(path)
    with open(path, "rb") as f:
        header, _ = _read_header(f, path, path.stat().st_size)
    return _metadata(path, header)


def load_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """All tensors of a safetensors file, on the CPU, checked against the header."""
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        header, data_start = _read_header(f, path, file_size)
        _metadata(path, header)
        entries = sorted(((name, *_parse_entry(path, name, info)) for name, info in header.items()
                          if name != "__metadata__"), key=lambda e: (e[3], e[4]))
        expected = 0
        for name, _, _, begin, end in entries:
            if begin != expected:
                raise _bad(path, f"{name!r} does not start where the previous tensor ends")
            expected = end
        if data_start + expected != file_size:
            raise _bad(path, f"data is {file_size - data_start} bytes, the header describes {expected}")
        out: dict[str, Tensor] = {}
        for name, dtype, shape, begin, end in entries:
            t = torch.empty(shape, dtype=dtype)
            f.seek(data_start + begin)
            if f.readinto(t.reshape(-1).view(torch.uint8).numpy()) != end - begin:
                raise _bad(path, f"{name!r} is truncated")
            out[name] = t
    return out
