"""`autosr detect`: probing through faked NVML / torch, tiers, recommendations, JSON, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from autosr import hardware
from autosr.cli import app
from autosr.errors import AutosrError
from autosr.hardware import TIER_SETTINGS, HardwareProfile, fake_profile, probe
from autosr.plan import recommend
from autosr.plan.detect_view import SCHEMA, print_report, to_json
from autosr.plan.presets import load_preset
from autosr.plan.recommend import MAX_BATCH

GIB = 1024**3
MIB = 1024**2
REPO = Path(__file__).resolve().parents[1]

# (name, total bytes, compute capability) as real cards report them
RTX_3070 = ("NVIDIA GeForce RTX 3070", 8192 * MIB, (8, 6))
RTX_4090 = ("NVIDIA GeForce RTX 4090", 24564 * MIB, (8, 9))
H100 = ("NVIDIA H100 80GB HBM3", 81559 * MIB, (9, 0))
RTX_2080TI = ("NVIDIA GeForce RTX 2080 Ti", 11264 * MIB, (7, 5))
GTX_1080 = ("NVIDIA GeForce GTX 1080", 8192 * MIB, (6, 1))


# ---------------------------------------------------------------------------------------------
# Fakes: just the surface of pynvml and torch that hardware.probe uses.


class FakeNVMLError(Exception):
    pass


class FakeNvml:
    """pynvml look-alike. `fail` maps a GPU index to the queries that raise for it."""

    def __init__(self, gpus=(), *, driver="550.54.15", cuda=12040, init_error=None, fail=None,
                 bytes_names=False, used_gib=0.0):
        self.gpus = list(gpus)
        self.driver, self.cuda, self.init_error = driver, cuda, init_error
        self.fail = fail or {}
        self.bytes_names = bytes_names
        self.used = int(used_gib * GIB)
        self.shut_down = False

    def _check(self, index, query):
        if query in self.fail.get(index, ()):
            raise FakeNVMLError(f"{query} failed")

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.shut_down = True

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self):
        return self.driver.encode() if self.bytes_names else self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check(index, "handle")
        return ("handle", index)

    def nvmlDeviceGetName(self, handle):
        self._check(handle[1], "name")
        name = self.gpus[handle[1]][0]
        return name.encode() if self.bytes_names else name

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check(handle[1], "memory")
        total = self.gpus[handle[1]][1]
        return SimpleNamespace(total=total, free=total - self.used, used=self.used)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        self._check(handle[1], "cc")
        return self.gpus[handle[1]][2]


def fake_torch(gpus=(), *, cuda_build="12.4", mps=False, fail=(), version="2.13.0"):
    """torch look-alike: CUDA is available when `gpus` is not empty; `fail` lists GPU indices
    whose property and memory queries raise."""

    def props(i):
        if i in fail:
            raise RuntimeError("CUDA error: unknown error")
        name, total, (major, minor) = gpus[i]
        return SimpleNamespace(name=name, total_memory=total, major=major, minor=minor)

    def mem_get_info(i):
        if i in fail:
            raise RuntimeError("CUDA error: unknown error")
        return (gpus[i][1], gpus[i][1])

    cuda = SimpleNamespace(
        is_available=lambda: bool(gpus),
        device_count=lambda: len(gpus),
        get_device_properties=props,
        mem_get_info=mem_get_info,
    )
    return SimpleNamespace(
        __version__=version,
        version=SimpleNamespace(cuda=cuda_build),
        cuda=cuda,
        backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps)),
    )


NO_DRIVER = FakeNVMLError("NVML Shared Library Not Found")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(recommend, "triton_available", lambda: True)


def _probe(tmp_path, nvml, torch):
    return probe(tmp_path / "runs", nvml=nvml, torch_module=torch)


def _expected_batch(vram_mib, target, preset_name, lq=None, scale=2):
    p = load_preset(preset_name)
    per = p.sample_mib(lq or p.lq_size, scale)
    return max(1, min(MAX_BATCH, int((vram_mib * target - p.fixed_mib) // per)))


# ---------------------------------------------------------------------------------------------
# The five machines of the issue


def test_no_gpu(tmp_path):
    prof = _probe(tmp_path, FakeNvml(init_error=NO_DRIVER), fake_torch(cuda_build=None))
    adv = recommend.recommend(prof)
    assert (prof.backend, prof.tier, prof.source, prof.gpus) == ("cpu", "cpu", "none", ())
    assert prof.gpu_vram_mib is None and prof.total_vram_mib is None
    assert adv.precision.value == "fp32" and adv.compile.value is False
    assert any("NVML" in n for n in prof.notes) and any("CPU-only build" in n for n in prof.notes)
    # CPU batches come from a RAM budget, with its own reason
    assert "RAM" in adv.batch_estimates["s"].reason
    assert adv.batch_estimates["nano"].value >= adv.batch_estimates["xl"].value >= 1


def test_one_8gb_ampere(tmp_path):
    nv = FakeNvml([RTX_3070])
    prof = _probe(tmp_path, nv, fake_torch([RTX_3070]))
    adv = recommend.recommend(prof)
    (gpu,) = prof.gpus
    assert (gpu.name, gpu.total_mib, gpu.compute_capability, gpu.arch_family, gpu.bf16) == (
        "NVIDIA GeForce RTX 3070", 8192, "8.6", "Ampere", True)
    assert (prof.source, prof.driver_version, prof.cuda_version, prof.torch_cuda) == (
        "nvml", "550.54.15", "12.4", "12.4")
    assert nv.shut_down
    assert prof.tier == "mid_range" and "≤ 8 GiB" in prof.tier_reason
    assert adv.precision.value == "bf16" and adv.channels_last.value is True and adv.compile.value is True
    assert adv.batch_estimates["s"].value == _expected_batch(8192, 0.85, "s")
    assert adv.batch_estimates["xl"].value == _expected_batch(8192, 0.85, "xl")
    assert "8.0 GiB × 0.85 mid_range target" in adv.batch_estimates["s"].reason
    assert prof.notes == ()


def test_one_24gb_ada(tmp_path):
    prof = _probe(tmp_path, FakeNvml([RTX_4090]), fake_torch([RTX_4090]))
    adv = recommend.recommend(prof)
    assert prof.gpus[0].arch_family == "Ada" and prof.tier == "high_end"
    assert adv.precision.value == "bf16"
    assert adv.batch_estimates["s"].value == _expected_batch(24564, 0.90, "s")
    assert adv.batch_estimates["m"].value == _expected_batch(24564, 0.90, "m")


def test_two_80gb_hopper(tmp_path):
    prof = _probe(tmp_path, FakeNvml([H100, H100]), fake_torch([H100, H100]))
    adv = recommend.recommend(prof)
    assert [g.index for g in prof.gpus] == [0, 1]
    assert all(g.arch_family == "Hopper" and g.bf16 for g in prof.gpus)
    assert prof.tier == "workstation" and prof.tier_reason.startswith("2 GPUs")
    assert prof.total_vram_mib == 2 * 81559 and prof.gpu_vram_mib == 81559
    assert adv.precision.value == "bf16"
    assert adv.batch_estimates["xl"].value == _expected_batch(81559, 0.93, "xl")  # per GPU
    assert adv.batch_estimates["nano"].value == MAX_BATCH  # the cap


def test_nvml_raising_falls_back_to_torch(tmp_path):
    prof = _probe(tmp_path, FakeNvml([RTX_3070], init_error=FakeNVMLError("Driver Not Loaded")),
                  fake_torch([RTX_3070]))
    adv = recommend.recommend(prof)
    assert prof.source == "torch" and prof.backend == "cuda"
    assert prof.gpus[0].name == "NVIDIA GeForce RTX 3070" and prof.gpus[0].total_mib == 8192
    assert prof.tier == "mid_range" and adv.precision.value == "bf16"
    assert prof.driver_version is None and prof.cuda_version == "12.4"  # torch's build
    assert any("NVML unavailable" in n and "Driver Not Loaded" in n for n in prof.notes)
    assert adv.batch_estimates["s"].value == _expected_batch(8192, 0.85, "s")


def test_nvml_and_torch_both_lacking(tmp_path):
    prof = _probe(tmp_path, False, False)
    assert (prof.backend, prof.tier, prof.source, prof.torch_version) == ("cpu", "cpu", "none", None)
    assert any("nvidia-ml-py" in n for n in prof.notes)
    assert any("torch could not be imported" in n for n in prof.notes)
    assert recommend.recommend(prof).precision.value == "fp32"


def test_one_gpu_query_failing_is_a_note(tmp_path):
    nv = FakeNvml([H100, H100], fail={1: {"handle"}})
    prof = _probe(tmp_path, nv, False)  # torch broken: nothing to fill the gap with
    assert [g.name for g in prof.gpus] == ["NVIDIA H100 80GB HBM3", "GPU 1"]
    assert prof.gpus[0].total_mib == 81559 and prof.gpus[1].total_mib is None
    assert any(n.startswith("GPU 1: NVML could not read device handle") for n in prof.notes)
    # the unknown card is assumed to be 8 GiB: it bounds the per-GPU batch
    assert prof.gpu_vram_mib == 8192
    assert any("VRAM of GPU 1 unknown: assuming 8 GiB" in n for n in prof.notes)
    assert "assumed" in recommend.recommend(prof).batch_estimates["s"].reason


def test_failed_nvml_field_is_read_from_torch(tmp_path):
    nv = FakeNvml([RTX_4090, RTX_4090], fail={1: {"memory"}})
    prof = _probe(tmp_path, nv, fake_torch([RTX_4090, RTX_4090]))
    assert prof.source == "nvml" and prof.gpus[1].total_mib == 24564
    assert any("GPU 1: NVML could not read memory" in n and "from torch" in n for n in prof.notes)
    assert prof.tier == "workstation"  # 2 × 24 GiB total


def test_vram_unknown_assumes_8gb(tmp_path):
    prof = _probe(tmp_path, False, fake_torch([RTX_4090], fail={0}))
    adv = recommend.recommend(prof)
    assert prof.backend == "cuda" and prof.gpus[0].total_mib is None
    assert prof.gpu_vram_mib == 8192 and prof.tier == "mid_range"
    assert "assumed" in prof.tier_reason
    assert any("assuming 8 GiB" in n for n in prof.notes)
    assert adv.precision.value == "fp16"  # compute capability unknown too: the safe choice
    assert adv.batch_estimates["s"].value == _expected_batch(8192, 0.85, "s")


# ---------------------------------------------------------------------------------------------
# Other probe paths


def test_old_pynvml_bytes_names(tmp_path):
    prof = _probe(tmp_path, FakeNvml([RTX_3070], bytes_names=True), fake_torch([RTX_3070]))
    assert prof.gpus[0].name == "NVIDIA GeForce RTX 3070" and prof.driver_version == "550.54.15"


def test_cuda_visible_devices_selects_nvml_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    prof = _probe(tmp_path, FakeNvml([RTX_3070, RTX_4090]), fake_torch([RTX_4090]))
    assert [(g.index, g.name) for g in prof.gpus] == [(0, "NVIDIA GeForce RTX 4090")]
    assert prof.source == "nvml" and prof.tier == "high_end"


def test_nvml_torch_count_mismatch_uses_torch(tmp_path):
    prof = _probe(tmp_path, FakeNvml([H100, H100]), fake_torch([H100]))
    assert prof.source == "torch" and len(prof.gpus) == 1
    assert any("NVML lists 2 GPU(s) but torch sees 1" in n for n in prof.notes)


def test_cpu_only_torch_on_gpu_machine(tmp_path):
    prof = _probe(tmp_path, FakeNvml([RTX_3070]), fake_torch(cuda_build=None))
    assert prof.backend == "cpu" and prof.tier == "cpu" and len(prof.gpus) == 1
    assert any("install a CUDA build of torch" in n for n in prof.notes)


def test_apple_mps(tmp_path):
    prof = _probe(tmp_path, FakeNvml(init_error=NO_DRIVER), fake_torch(cuda_build=None, mps=True))
    adv = recommend.recommend(prof)
    assert (prof.backend, prof.tier, prof.source) == ("mps", "cpu", "torch")
    assert adv.precision.value == "fp32" and adv.compile.value is False
    assert "MPS" in adv.batch_estimates["s"].reason


def test_busy_gpu_is_noted(tmp_path):
    prof = _probe(tmp_path, FakeNvml([RTX_3070], used_gib=6.0), fake_torch([RTX_3070]))
    assert prof.gpus[0].free_mib == 2048
    assert any("only 2.0 GiB of 8.0 GiB free" in n for n in prof.notes)


def test_cpu_ram_and_disk(tmp_path):
    prof = _probe(tmp_path, False, False)
    assert prof.logical_cores >= prof.physical_cores >= 1
    assert prof.ram_total_mib >= prof.ram_available_mib > 0
    assert prof.disk_path == str(tmp_path) and prof.disk_free_mib and prof.disk_free_mib > 0
    assert prof.cpu_model and prof.platform == sys.platform


# ---------------------------------------------------------------------------------------------
# Tiers and recommendations on faked profiles


@pytest.mark.parametrize(("gib", "tier"), [
    (4.0, "budget"), (4.1, "mid_range"), (8.0, "mid_range"), (8.1, "high_end"),
    (24.0, "high_end"), (24.1, "workstation"), (141.0, "workstation"),
])
def test_tier_thresholds(gib, tier):
    prof = fake_profile((("GPU", gib, "8.9"),))
    assert prof.tier == tier and prof.tier_reason.endswith(f"→ {tier}")


def test_tier_settings_table():
    assert set(TIER_SETTINGS) == {"budget", "mid_range", "high_end", "workstation", "cpu"}
    assert TIER_SETTINGS["mid_range"].vram_target == 0.85
    assert TIER_SETTINGS["workstation"].early_stop_patience == 3000
    assert TIER_SETTINGS["cpu"].lr_patience == TIER_SETTINGS["budget"].lr_patience


def test_batch_is_a_formula_of_vram():
    m = load_preset("m")
    b40 = recommend.estimate_batch(fake_profile((("A", 40.0, "9.0"),)), m).value
    b80 = recommend.estimate_batch(fake_profile((("A", 80.0, "9.0"),)), m).value
    assert 1.9 <= b80 / b40 <= 2.2  # doubling VRAM roughly doubles the batch
    sizes = [recommend.estimate_batch(fake_profile((("A", g, "8.6"),)), load_preset("xl")).value
             for g in (4, 8, 12, 24, 48, 80)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    # a bigger patch costs more per sample: 4× the area, about a quarter of the batch
    prof = fake_profile((("A", 80.0, "9.0"),))
    b128 = recommend.estimate_batch(prof, m, lq_size=128).value
    assert b128 == _expected_batch(80 * 1024, 0.93, "m", lq=128)
    assert "lq 128" in recommend.estimate_batch(prof, m, lq_size=128).reason


def test_batch_bounds():
    tiny_card = fake_profile((("A", 1.0, "8.6"),))
    d = recommend.estimate_batch(tiny_card, load_preset("xl"))
    assert d.value == 1 and "out-of-memory" in d.reason
    d = recommend.estimate_batch(fake_profile((("A", 80.0, "9.0"),)), load_preset("nano"))
    assert d.value == MAX_BATCH and f"capped at {MAX_BATCH}" in d.reason


def test_batch_reason_shows_the_inputs():
    p = load_preset("tiny")
    d = recommend.estimate_batch(fake_profile((("A", 24.0, "8.9"),)), p)
    assert d.reason.startswith(
        f"24.0 GiB × 0.90 high_end target = 21.6 GiB; (21.6 GiB − {p.fixed_mib:.0f} MiB fixed) "
        f"÷ {p.per_sample_mib:.2g} MiB/sample at lq 64 ×2"
    )


@pytest.mark.parametrize(("cc", "precision"), [
    ("12.0", "bf16"), ("9.0", "bf16"), ("8.0", "bf16"), ("7.5", "fp16"), ("7.0", "fp16"), ("6.1", "fp32"),
])
def test_precision_by_compute_capability(cc, precision):
    assert recommend.choose_precision(fake_profile((("G", 8.0, cc),))).value == precision


def test_mixed_gpus_use_the_weaker_precision():
    prof = fake_profile((("A", 24.0, "8.9"), ("T", 11.0, "7.5")))
    assert recommend.choose_precision(prof).value == "fp16"


def test_arch_families():
    fam = hardware.arch_family
    assert [fam(c) for c in ("7.0", "7.5", "8.0", "8.6", "8.7", "8.9", "9.0", "10.0", "12.0", "6.1", None)] == [
        "Volta", "Turing", "Ampere", "Ampere", "Ampere", "Ada", "Hopper", "Blackwell", "Blackwell", "Pascal",
        "unknown"]


def test_compile_choice(monkeypatch):
    linux = fake_profile()
    assert recommend.choose_compile(linux).value is True
    assert recommend.choose_compile(fake_profile(platform="win32")).value is False
    assert "Windows" in recommend.choose_compile(fake_profile(platform="win32")).reason
    assert recommend.choose_compile(fake_profile((), platform="darwin", backend="mps")).value is False
    assert recommend.choose_compile(fake_profile(())).value is False
    assert recommend.choose_compile(fake_profile((("P", 8.0, "6.1"),))).value is False
    monkeypatch.setattr(recommend, "triton_available", lambda: False)
    d = recommend.choose_compile(linux)
    assert d.value is False and "Triton" in d.reason


def test_channels_last_choice():
    assert recommend.choose_channels_last(fake_profile()).value is True
    assert recommend.choose_channels_last(fake_profile(())).value is False
    assert recommend.choose_channels_last(fake_profile((("P", 8.0, "6.1"),))).value is False


@pytest.mark.parametrize(("gpus", "cores", "workers"), [(1, 16, 8), (1, 4, 3), (8, 16, 1), (2, 2, 0), (0, 8, 2), (0, 2, 0)])
def test_workers(gpus, cores, workers):
    prof = fake_profile(tuple(("G", 24.0, "8.9") for _ in range(gpus)), cpu_cores=cores)
    d = recommend.choose_workers(prof)
    assert d.value == workers and str(cores) in d.reason


def test_fake_profile_helper():
    prof = fake_profile((("A", 8.0, "8.6"), ("B", None, None)), cpu_cores=4, ram_gib=16.0)
    assert prof.gpus[0].total_mib == 8192 and prof.gpus[1].total_mib is None
    assert prof.ram_total_mib == 16384 and prof.physical_cores == 4
    assert fake_profile(()).backend == "cpu"


# ---------------------------------------------------------------------------------------------
# Serialisation: to_dict / from_dict and the JSON schema


@pytest.mark.parametrize("prof", [
    fake_profile(), fake_profile(()), fake_profile((("A", None, None), ("B", 80.0, "9.0"))),
])
def test_profile_round_trip(prof):
    data = json.loads(json.dumps(prof.to_dict()))
    back = HardwareProfile.from_dict(data)
    assert back == prof and back.tier == prof.tier


def test_probed_profile_round_trip(tmp_path):
    prof = _probe(tmp_path, FakeNvml([H100, H100], fail={1: {"cc"}}), fake_torch([H100, H100]))
    assert HardwareProfile.from_dict(json.loads(json.dumps(prof.to_dict()))) == prof


def test_from_dict_tolerates_new_keys_and_rejects_missing():
    data = fake_profile().to_dict()
    data["future_field"] = 1
    data["gpus"][0]["future_gpu_field"] = 2
    assert HardwareProfile.from_dict(data) == fake_profile()
    del data["backend"]
    with pytest.raises(AutosrError, match="incomplete"):
        HardwareProfile.from_dict(data)


_DECISION_TYPES = {"precision": str, "channels_last": bool, "compile": bool, "workers": int, "batch_budget_mib": int}
_HARDWARE_TYPES = {
    "backend": str, "gpus": list, "driver_version": (str, type(None)), "cuda_version": (str, type(None)),
    "torch_version": (str, type(None)), "torch_cuda": (str, type(None)), "cpu_model": str,
    "physical_cores": int, "logical_cores": int, "ram_total_mib": int, "ram_available_mib": int,
    "disk_free_mib": (int, type(None)), "disk_path": str, "source": str, "notes": list, "platform": str,
}
_GPU_TYPES = {
    "index": int, "name": str, "total_mib": (int, type(None)), "free_mib": (int, type(None)),
    "compute_capability": (str, type(None)), "arch_family": str, "bf16": bool,
}


@pytest.mark.parametrize("machine", ["none", "ampere", "hopper2"])
def test_json_schema(tmp_path, machine):
    nv, torch = {
        "none": (FakeNvml(init_error=NO_DRIVER), fake_torch(cuda_build=None)),
        "ampere": (FakeNvml([RTX_3070]), fake_torch([RTX_3070])),
        "hopper2": (FakeNvml([H100, H100]), fake_torch([H100, H100])),
    }[machine]
    prof = _probe(tmp_path, nv, torch)
    doc = json.loads(to_json(prof, recommend.recommend(prof)))

    assert set(doc) == {"schema", "hardware", "tier", "recommendations"} and doc["schema"] == SCHEMA == "autosr.detect/1"
    hw = doc["hardware"]
    assert set(hw) == set(_HARDWARE_TYPES)
    for key, kind in _HARDWARE_TYPES.items():
        assert isinstance(hw[key], kind), key
    for gpu in hw["gpus"]:
        assert set(gpu) == set(_GPU_TYPES)
        for key, kind in _GPU_TYPES.items():
            assert isinstance(gpu[key], kind), key
    assert all(isinstance(n, str) for n in hw["notes"])

    tier = doc["tier"]
    assert set(tier) == {"name", "reason", "gpu_vram_mib", "total_vram_mib", "settings"}
    assert tier["name"] in TIER_SETTINGS and isinstance(tier["reason"], str)
    assert set(tier["settings"]) == {"vram_target", "safety_margin", "lr_patience", "clip_start", "early_stop_patience"}

    rec = doc["recommendations"]
    assert set(rec) == set(_DECISION_TYPES) | {"batch"}
    for key, kind in _DECISION_TYPES.items():
        assert set(rec[key]) == {"value", "reason"} and isinstance(rec[key]["value"], kind), key
    assert rec["precision"]["value"] in {"bf16", "fp16", "fp32"}
    assert list(rec["batch"]) == [f"paragonsr2_{v}" for v in ("nano", "micro", "tiny", "xs", "s", "m", "l", "xl")]
    for entry in rec["batch"].values():
        assert set(entry) == {"value", "reason", "lq_size"}
        assert isinstance(entry["value"], int) and 1 <= entry["value"] <= MAX_BATCH and isinstance(entry["lq_size"], int)
    assert HardwareProfile.from_dict(hw) == prof


def test_report_text(tmp_path):
    prof = _probe(tmp_path, FakeNvml([H100, H100], fail={1: {"name"}}), fake_torch([H100, H100]))
    console = Console(record=True, width=200)
    print_report(prof, recommend.recommend(prof), console=console)
    text = console.export_text()
    for expected in ("NVIDIA H100 80GB HBM3", "Hopper", "workstation", "bf16", "paragonsr2_xl",
                     "driver 550.54.15", "GPU 1: NVML could not read name", "memory budget"):
        assert expected in text, expected


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.fixture
def fake_sources(monkeypatch):
    """Point probe's default sources (the seam) at fakes."""

    def use(nvml, torch):
        monkeypatch.setattr(hardware, "load_nvml", lambda: nvml)
        monkeypatch.setattr(hardware, "load_torch", lambda: torch)

    return use


def test_cli_detect(tmp_path, fake_sources):
    fake_sources(FakeNvml([RTX_4090]), fake_torch([RTX_4090]))
    result = CliRunner().invoke(app, ["detect", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "RTX 4090" in result.output and "high_end" in result.output


def test_cli_detect_json(tmp_path, fake_sources):
    fake_sources(FakeNvml([H100, H100]), fake_torch([H100, H100]))
    result = CliRunner().invoke(app, ["detect", "--json", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["tier"]["name"] == "workstation" and len(doc["hardware"]["gpus"]) == 2


def test_cli_detect_without_anything(tmp_path, fake_sources):
    fake_sources(None, None)
    result = CliRunner().invoke(app, ["detect", "--json", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["tier"]["name"] == "cpu" and doc["hardware"]["notes"]


@pytest.mark.parametrize("args", [["--help"], ["detect", "--help"]])
def test_help_does_not_import_torch(args):
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "autosr.cli", *args],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    assert imported, "no -X importtime output"
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]
    assert not [m for m in imported if m == "pynvml"]


def test_torch_that_errors_is_a_note(tmp_path):
    def broken():
        raise RuntimeError("CUDA driver initialization failed")

    torch = fake_torch([RTX_3070])
    torch.cuda.is_available = broken
    prof = _probe(tmp_path, FakeNvml(init_error=NO_DRIVER), torch)
    assert prof.backend == "cpu" and any("CUDA driver initialization failed" in n for n in prof.notes)
    assert _probe(tmp_path, False, SimpleNamespace(__version__="0.0")).backend == "cpu"  # no torch.cuda at all
