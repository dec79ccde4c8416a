"""probe → HardwareProfile: the one module that asks NVML / CUDA / the OS for facts.

Every query is best effort: a fact that cannot be read becomes a note saying what is missing
and which assumption replaces it, never an exception. NVML and torch are imported lazily inside
`probe` (never at module import) so that `autosr --help` stays fast, and both are injectable so
that tests can fake any machine.
"""

from __future__ import annotations

import contextlib
import os
import platform as _platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from autosr.errors import AutosrError

MIB = 1024 * 1024
ASSUMED_VRAM_MIB = 8192  # seed 04 / runtime-scheduler.md: VRAM unknown → assume 8 GB

# Tier thresholds on total VRAM (runtime-scheduler.md): ≤4 GB budget, ≤8 GB mid_range,
# ≤24 GB high_end, above that workstation. GB read as GiB, since cards are sized in GiB.
_TIER_LIMITS_MIB = (("budget", 4 * 1024), ("mid_range", 8 * 1024), ("high_end", 24 * 1024))


@dataclass(frozen=True)
class TierSettings:
    vram_target: float  # share of a GPU's VRAM the batch may fill
    safety_margin: float  # headroom below the target before the batch may grow
    lr_patience: int  # LR plateau patience, iterations
    clip_start: float  # initial gradient-clipping threshold
    early_stop_patience: int  # iterations


TIER_SETTINGS: dict[str, TierSettings] = {
    "budget": TierSettings(0.75, 0.15, 800, 0.8, 1500),
    "mid_range": TierSettings(0.85, 0.05, 1000, 1.0, 2000),
    "high_end": TierSettings(0.90, 0.03, 1200, 1.2, 2500),
    "workstation": TierSettings(0.93, 0.02, 1500, 1.5, 3000),
    # No VRAM to fill on CPU: the budget row's patience/clip values; target/margin unused.
    "cpu": TierSettings(0.75, 0.15, 800, 0.8, 1500),
}

_FAMILIES = {
    "3": "Kepler", "5": "Maxwell", "6": "Pascal", "7.0": "Volta", "7.2": "Volta", "7.5": "Turing",
    "8.0": "Ampere", "8.6": "Ampere", "8.7": "Ampere", "8.9": "Ada", "9": "Hopper",
    "10": "Blackwell", "11": "Blackwell", "12": "Blackwell",
}


def arch_family(compute_capability: str | None) -> str:
    """'8.6' → 'Ampere'; exact match first, then the major version; 'unknown' otherwise."""
    if not compute_capability:
        return "unknown"
    major = compute_capability.split(".")[0]
    return _FAMILIES.get(compute_capability) or _FAMILIES.get(major) or "unknown"


def supports_bf16(compute_capability: str | None) -> bool:
    """bf16 tensor cores arrived with Ampere (cc 8.0)."""
    if not compute_capability:
        return False
    try:
        major, _, minor = compute_capability.partition(".")
        return (int(major), int(minor or 0)) >= (8, 0)
    except ValueError:
        return False


@dataclass(frozen=True)
class GpuInfo:
    index: int  # the CUDA ordinal (cuda:<index>) as torch sees it
    name: str
    total_mib: int | None
    free_mib: int | None
    compute_capability: str | None  # "8.6"
    arch_family: str
    bf16: bool


@dataclass(frozen=True)
class HardwareProfile:
    backend: str  # "cuda" | "mps" | "cpu": what training would run on
    gpus: tuple[GpuInfo, ...]
    driver_version: str | None
    cuda_version: str | None  # the CUDA version the driver supports (NVML), else torch's build
    torch_version: str | None
    cpu_model: str
    physical_cores: int
    logical_cores: int
    ram_total_mib: int
    ram_available_mib: int
    disk_free_mib: int | None
    disk_path: str
    source: str  # where the GPU facts came from: "nvml" | "torch" | "none" ("fake" in tests)
    notes: tuple[str, ...]  # what could not be read, and the assumption made instead
    platform: str  # sys.platform
    torch_cuda: str | None = None  # CUDA version torch was built for (None: CPU-only build)

    @property
    def gpu_vram_mib(self) -> int | None:
        """VRAM of the smallest GPU used (a batch must fit each); unknown counts as 8 GiB."""
        if self.backend != "cuda":
            return None
        if not self.gpus:
            return ASSUMED_VRAM_MIB
        return min(_known_or_assumed(g.total_mib) for g in self.gpus)

    @property
    def total_vram_mib(self) -> int | None:
        if self.backend != "cuda":
            return None
        if not self.gpus:
            return ASSUMED_VRAM_MIB
        return sum(_known_or_assumed(g.total_mib) for g in self.gpus)

    @property
    def vram_known(self) -> bool:
        return self.backend == "cuda" and bool(self.gpus) and all(g.total_mib for g in self.gpus)

    @property
    def tier(self) -> str:
        return tier_for_vram(self.total_vram_mib)

    @property
    def tier_reason(self) -> str:
        tier = self.tier
        if tier == "cpu":
            what = "Apple MPS (shares system RAM)" if self.backend == "mps" else "CPU only"
            return f"no usable CUDA GPU ({what}) → cpu"
        total = self.total_vram_mib or 0
        count = max(1, len(self.gpus))
        gpus = f"{count} GPU{'s' if count > 1 else ''}"
        assumed = "" if self.vram_known else " (unknown VRAM assumed 8 GiB per GPU)"
        limit = dict(_TIER_LIMITS_MIB).get(tier)
        rule = f"≤ {limit // 1024} GiB" if limit else f"> {_TIER_LIMITS_MIB[-1][1] // 1024} GiB"
        return f"{gpus}, {_gib(total)} total VRAM{assumed} {rule} → {tier}"

    @property
    def settings(self) -> TierSettings:
        return TIER_SETTINGS[self.tier]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (lists, not tuples); `from_dict` reads it back."""
        data = asdict(self)
        data["gpus"] = [dict(g) for g in data["gpus"]]
        data["notes"] = list(data["notes"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareProfile:
        """Rebuild a saved profile; keys from newer versions are ignored, missing ones are an error."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["gpus"] = tuple(
                GpuInfo(**{k: v for k, v in g.items() if k in _GPU_FIELDS}) for g in data.get("gpus", ())
            )
            values["notes"] = tuple(data.get("notes", ()))
            return cls(**values)
        except (TypeError, AttributeError) as exc:
            raise AutosrError(f"hardware profile is incomplete or malformed: {exc}", "run `autosr detect` again") from exc


_GPU_FIELDS = {f.name for f in fields(GpuInfo)}


def tier_for_vram(total_mib: int | None) -> str:
    """The hardware tier of the GPUs' total VRAM (None: no CUDA GPU → "cpu")."""
    if total_mib is None:
        return "cpu"
    return next((name for name, limit in _TIER_LIMITS_MIB if total_mib <= limit), "workstation")


def _known_or_assumed(total_mib: int | None) -> int:
    return total_mib if total_mib else ASSUMED_VRAM_MIB


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


# ---------------------------------------------------------------------------------------------
# Probing. `load_nvml` and `load_torch` are the default sources; tests replace them (or pass
# `nvml=` / `torch_module=` to `probe`; False there means "not installed").


def load_nvml() -> Any:
    """The pynvml module, or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def load_torch() -> Any:
    """The torch module, or None when it cannot be imported."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - a broken torch install must not stop the probe
        return None
    return torch


def probe(runs_dir: Path = Path("runs"), *, nvml: Any = None, torch_module: Any = None) -> HardwareProfile:
    """Read this machine's GPUs, CPU, RAM and free disk. Never raises on missing facts."""
    notes: list[str] = []
    nv = load_nvml() if nvml is None else (nvml or None)
    torch = load_torch() if torch_module is None else (torch_module or None)

    view = _TorchView(torch, notes)
    nv_facts = _probe_nvml(nv, notes)
    backend, gpus, source = _choose_gpus(view, nv_facts, notes)
    driver, nv_cuda = (nv_facts.driver, nv_facts.cuda) if nv_facts else (None, None)
    _note_unknown_vram(backend, gpus, notes)
    _note_busy_gpus(backend, gpus, notes)

    logical, physical = _cpu_counts(notes)
    ram_total, ram_avail = _ram(notes)
    disk_free, disk_path = _disk_free(runs_dir, notes)
    return HardwareProfile(
        backend=backend,
        gpus=tuple(gpus),
        driver_version=driver,
        cuda_version=nv_cuda or view.cuda_build,
        torch_version=view.version,
        cpu_model=_cpu_model(),
        physical_cores=physical,
        logical_cores=logical,
        ram_total_mib=ram_total,
        ram_available_mib=ram_avail,
        disk_free_mib=disk_free,
        disk_path=disk_path,
        source=source,
        notes=tuple(notes),
        platform=sys.platform,
        torch_cuda=view.cuda_build,
    )


def _attempt(fn: Callable[[], Any], what: str, errors: list[str]) -> Any:
    """Run one query; on failure record 'what (error)' and return None."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - each hardware query may fail in its own way
        errors.append(f"{what} ({_describe(exc)})")
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: Any) -> str:
    """pynvml returns bytes in old versions and str in new ones."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cuda_text(version: int) -> str:
    """NVML's 12040 → '12.4'."""
    return f"{version // 1000}.{(version % 1000) // 10}"


class _TorchView:
    """What torch says about the accelerators, each answer guarded."""

    def __init__(self, torch: Any, notes: list[str]) -> None:
        self.torch = torch
        self.version: str | None = None
        self.cuda_build: str | None = None
        self.cuda = False
        self.count = 0
        self.mps = False
        if torch is None:
            notes.append("torch could not be imported: install it to train (GPU facts from NVML only)")
            return
        errors: list[str] = []
        self.version = str(getattr(torch, "__version__", "")) or None
        build = getattr(getattr(torch, "version", None), "cuda", None)
        self.cuda_build = str(build) if build else None
        self.cuda = bool(_attempt(lambda: torch.cuda.is_available(), "torch.cuda.is_available", errors))
        if self.cuda:
            self.count = int(_attempt(lambda: torch.cuda.device_count(), "torch.cuda.device_count", errors) or 0)
        mps = getattr(getattr(torch, "backends", None), "mps", None)
        if mps is not None:
            self.mps = bool(_attempt(mps.is_available, "torch.backends.mps.is_available", errors))
        notes.extend(f"could not read {e}" for e in errors)

    def gpu(self, index: int, errors: list[str]) -> GpuInfo:
        """One GPU from torch.cuda; unreadable fields stay None."""
        cuda = self.torch.cuda
        props = _attempt(lambda: cuda.get_device_properties(index), "device properties", errors)
        mem = _attempt(lambda: cuda.mem_get_info(index), "free memory", errors)
        cc = f"{props.major}.{props.minor}" if props is not None else None
        total = props.total_memory if props is not None else (mem[1] if mem else None)
        return GpuInfo(
            index=index,
            name=str(props.name) if props is not None else f"GPU {index}",
            total_mib=int(total // MIB) if total else None,
            free_mib=int(mem[0] // MIB) if mem else None,
            compute_capability=cc,
            arch_family=arch_family(cc),
            bf16=supports_bf16(cc),
        )


@dataclass
class _NvmlFacts:
    gpus: list[GpuInfo]
    errors: dict[int, list[str]]  # per-GPU query failures, by CUDA ordinal
    driver: str | None
    cuda: str | None


def _probe_nvml(nv: Any, notes: list[str]) -> _NvmlFacts | None:
    if nv is None:
        notes.append("NVML (nvidia-ml-py) is not installed: GPU facts from torch.cuda")
        return None
    try:
        nv.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver, no library, permission…
        notes.append(f"NVML unavailable ({_describe(exc)}): no NVIDIA driver, or it cannot be loaded")
        return None
    try:
        return _read_nvml(nv, notes)
    finally:
        with contextlib.suppress(Exception):  # shutting down is a courtesy
            nv.nvmlShutdown()


def _read_nvml(nv: Any, notes: list[str]) -> _NvmlFacts | None:
    errors: list[str] = []
    count = _attempt(nv.nvmlDeviceGetCount, "NVML device count", errors)
    driver = _attempt(lambda: _text(nv.nvmlSystemGetDriverVersion()), "driver version", errors)
    cuda = _attempt(lambda: _cuda_text(int(nv.nvmlSystemGetCudaDriverVersion())), "CUDA driver version", errors)
    notes.extend(f"NVML: could not read {e}" for e in errors)
    if count is None:
        return None
    order = _visible_order(int(count), os.environ.get("CUDA_VISIBLE_DEVICES"))
    facts = _NvmlFacts([], {}, driver, cuda)
    for ordinal, nv_index in enumerate(order):
        gpu_errors: list[str] = []
        facts.gpus.append(_nvml_gpu(nv, ordinal, nv_index, gpu_errors))
        if gpu_errors:
            facts.errors[ordinal] = gpu_errors
    return facts


def _visible_order(count: int, visible: str | None) -> list[int]:
    """NVML indices in CUDA-ordinal order, honouring integer CUDA_VISIBLE_DEVICES (NVML ignores it).
    UUID forms are left alone: the count check against torch catches a mismatch."""
    if visible is None:
        return list(range(count))
    order: list[int] = []
    for token in (t.strip() for t in visible.split(",")):
        if not token.lstrip("-").isdigit():
            return list(range(count)) if not order and token else order
        index = int(token)
        if not 0 <= index < count:
            break  # CUDA stops at the first invalid entry
        order.append(index)
    return order


def _nvml_gpu(nv: Any, ordinal: int, nv_index: int, errors: list[str]) -> GpuInfo:
    handle = _attempt(lambda: nv.nvmlDeviceGetHandleByIndex(nv_index), "device handle", errors)
    if handle is None:
        return GpuInfo(ordinal, f"GPU {ordinal}", None, None, None, "unknown", False)
    name = _attempt(lambda: _text(nv.nvmlDeviceGetName(handle)), "name", errors)
    mem = _attempt(lambda: nv.nvmlDeviceGetMemoryInfo(handle), "memory", errors)
    cc_pair = _attempt(lambda: nv.nvmlDeviceGetCudaComputeCapability(handle), "compute capability", errors)
    cc = f"{cc_pair[0]}.{cc_pair[1]}" if cc_pair else None
    return GpuInfo(
        index=ordinal,
        name=name or f"GPU {ordinal}",
        total_mib=int(mem.total // MIB) if mem is not None else None,
        free_mib=int(mem.free // MIB) if mem is not None else None,
        compute_capability=cc,
        arch_family=arch_family(cc),
        bf16=supports_bf16(cc),
    )


def _choose_gpus(view: _TorchView, nv: _NvmlFacts | None, notes: list[str]) -> tuple[str, list[GpuInfo], str]:
    """(backend, GPUs, source). NVML facts first; torch's where NVML failed or disagrees."""
    nv_gpus = nv.gpus if nv else []
    if view.cuda:
        if nv_gpus and len(nv_gpus) != view.count:
            notes.append(
                f"NVML lists {len(nv_gpus)} GPU(s) but torch sees {view.count} "
                "(CUDA_VISIBLE_DEVICES?): using torch's facts"
            )
            nv_gpus = []
        if nv is None or not nv_gpus:
            return "cuda", _torch_gpus(view, notes), "torch"
        return "cuda", _fill_from_torch(view, nv, notes), "nvml"
    if view.torch is not None and nv_gpus:
        notes.append(
            f"torch {view.version} cannot use CUDA, so the {len(nv_gpus)} NVIDIA GPU(s) NVML lists stay idle: "
            "install a CUDA build of torch (pytorch.org/get-started) to train on them"
        )
    _note_nvml_errors(nv, notes)
    if view.torch is None and nv_gpus:
        return "cuda", nv_gpus, "nvml"  # torch is broken, but this is what it would train on
    if view.mps:
        return "mps", nv_gpus, "torch"
    if view.torch is not None and not nv_gpus:
        why = "is a CPU-only build" if view.cuda_build is None else "sees no CUDA GPU or Apple MPS"
        notes.append(f"torch {view.version} {why}: training runs on the CPU")
    return "cpu", nv_gpus, "nvml" if nv_gpus else "none"


def _torch_gpus(view: _TorchView, notes: list[str]) -> list[GpuInfo]:
    gpus = []
    for index in range(view.count):
        errors: list[str] = []
        gpus.append(view.gpu(index, errors))
        notes.extend(f"GPU {index}: torch could not read {e}" for e in errors)
    return gpus


def _fill_from_torch(view: _TorchView, nv: _NvmlFacts, notes: list[str]) -> list[GpuInfo]:
    """Take a failed NVML field of a GPU from torch instead, saying so."""
    gpus = []
    for gpu in nv.gpus:
        errors = nv.errors.get(gpu.index)
        if not errors:
            gpus.append(gpu)
            continue
        torch_errors: list[str] = []
        alt = view.gpu(gpu.index, torch_errors)
        merged = _merge(gpu, alt)
        filled = "; read from torch instead" if merged != gpu else ""
        notes.append(f"GPU {gpu.index}: NVML could not read {', '.join(errors)}{filled}")
        notes.extend(f"GPU {gpu.index}: torch could not read {e} either" for e in torch_errors)
        gpus.append(merged)
    return gpus


def _merge(primary: GpuInfo, fallback: GpuInfo) -> GpuInfo:
    cc = primary.compute_capability or fallback.compute_capability
    unnamed = primary.name == f"GPU {primary.index}"
    return GpuInfo(
        index=primary.index,
        name=fallback.name if unnamed else primary.name,
        total_mib=primary.total_mib or fallback.total_mib,
        free_mib=primary.free_mib if primary.free_mib is not None else fallback.free_mib,
        compute_capability=cc,
        arch_family=arch_family(cc),
        bf16=supports_bf16(cc),
    )


def _note_nvml_errors(nv: _NvmlFacts | None, notes: list[str]) -> None:
    for index, errors in (nv.errors.items() if nv else ()):
        notes.append(f"GPU {index}: NVML could not read {', '.join(errors)}")


def _note_unknown_vram(backend: str, gpus: list[GpuInfo], notes: list[str]) -> None:
    if backend != "cuda":
        return
    unknown = [str(g.index) for g in gpus if not g.total_mib]
    if not gpus:
        notes.append("CUDA is available but no GPU could be read: assuming one GPU with 8 GiB of VRAM")
    elif unknown:
        notes.append(f"VRAM of GPU {', '.join(unknown)} unknown: assuming 8 GiB (conservative)")


def _note_busy_gpus(backend: str, gpus: list[GpuInfo], notes: list[str]) -> None:
    """Estimates use the whole card; say so when something else holds much of it right now."""
    if backend != "cuda":
        return
    for g in gpus:
        if g.total_mib and g.free_mib is not None and g.free_mib < 0.5 * g.total_mib:
            notes.append(
                f"GPU {g.index}: only {_gib(g.free_mib)} of {_gib(g.total_mib)} free now; "
                "batch estimates assume the whole card is free at training time"
            )


# ---------------------------------------------------------------------------------------------
# CPU, RAM, disk


def _cpu_counts(notes: list[str]) -> tuple[int, int]:
    """(logical, physical) cores this process may use: affinity and cgroup quota applied."""
    try:
        import psutil

        logical = psutil.cpu_count() or os.cpu_count() or 1
        physical = psutil.cpu_count(logical=False) or logical
    except ImportError:
        logical = physical = os.cpu_count() or 1
        notes.append("psutil is not installed: physical cores assumed equal to logical cores")
    usable = _usable_cpus() or logical
    if usable < logical:  # a container or taskset limits us: scale the physical count alike
        physical = max(1, round(physical * usable / logical))
        logical = usable
    return int(logical), int(min(physical, logical))


def _usable_cpus() -> int | None:
    counts = []
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    try:  # cgroup v2 quota, e.g. docker --cpus=4 → "400000 100000"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            counts.append(max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return min(counts) if counts else None


def _ram(notes: list[str]) -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total // MIB), int(vm.available // MIB)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"RAM could not be read ({_describe(exc)}): reported as 0")
        return 0, 0


def _disk_free(runs_dir: Path, notes: list[str]) -> tuple[int | None, str]:
    """Free space where runs will be written: runs_dir, or its nearest existing parent."""
    path = Path(runs_dir).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(shutil.disk_usage(path).free // MIB), str(path)
    except OSError as exc:
        notes.append(f"free disk at {path} could not be read ({_describe(exc)})")
        return None, str(path)


def _cpu_model() -> str:
    """Best effort: /proc/cpuinfo, sysctl on macOS, the registry on Windows, then platform."""
    for reader in (_cpu_model_linux, _cpu_model_macos, _cpu_model_windows):
        try:
            name = reader()
        except Exception:  # noqa: BLE001 - any reader may fail; the next one may not
            name = None
        if name:
            return " ".join(name.split())
    return _platform.processor() or _platform.machine() or "unknown"


def _cpu_model_linux() -> str | None:
    if not sys.platform.startswith("linux"):
        return None
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    for key in ("model name", "Model", "Hardware", "cpu model"):  # x86, then ARM boards
        for line in text.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    return None


def _cpu_model_macos() -> str | None:
    if sys.platform != "darwin":
        return None
    out = subprocess.run(
        ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2, check=False
    )
    return out.stdout.strip() or None


def _cpu_model_windows() -> str | None:
    if sys.platform != "win32":
        return None
    import winreg

    key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
    return str(winreg.QueryValueEx(key, "ProcessorNameString")[0])


# ---------------------------------------------------------------------------------------------
# A public helper for tests across the project: fake hardware without touching any driver.


def fake_profile(
    gpus: tuple[tuple[str, float | None, str | None], ...] = (("NVIDIA GeForce RTX 3070", 8.0, "8.6"),),
    *,
    cpu_cores: int = 8,
    ram_gib: float = 32.0,
    platform: str = "linux",
    backend: str | None = None,
) -> HardwareProfile:
    """A HardwareProfile from (name, VRAM GiB or None, compute capability or None) per GPU.
    No GPUs → a CPU-only machine; `backend="mps"` fakes an Apple machine."""
    infos = tuple(
        GpuInfo(
            index=i,
            name=name,
            total_mib=int(gib * 1024) if gib else None,
            free_mib=int(gib * 1024) if gib else None,
            compute_capability=cc,
            arch_family=arch_family(cc),
            bf16=supports_bf16(cc),
        )
        for i, (name, gib, cc) in enumerate(gpus)
    )
    chosen = backend or ("cuda" if infos else "cpu")
    cuda = chosen == "cuda"
    return HardwareProfile(
        backend=chosen,
        gpus=infos,
        driver_version="555.42" if cuda else None,
        cuda_version="12.5" if cuda else None,
        torch_version="2.13.0",
        cpu_model="Fake CPU",
        physical_cores=cpu_cores,
        logical_cores=cpu_cores,
        ram_total_mib=int(ram_gib * 1024),
        ram_available_mib=int(ram_gib * 1024),
        disk_free_mib=500 * 1024,
        disk_path="runs",
        source="fake",
        notes=(),
        platform=platform,
        torch_cuda="12.4" if cuda else None,
    )
