"""autosr init: the planner, the rendered YAML (types, strict schema, round trip) and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autosr.cli import app
from autosr.config import parse_override, validate
from autosr.errors import AutosrError
from autosr.hardware import fake_profile
from autosr.init_cmd import run_init
from autosr.plan.dataset import analyse
from autosr.plan.planner import ValData, budget_arch_choice, make_plan, pick_arch
from autosr.plan.presets import VARIANTS
from autosr.plan.render import render, scalar
from autosr.plan_file import plan_records, read_plan, write_plan

runner = CliRunner()
GPU_8GB = (("NVIDIA GeForce RTX 3070", 8.0, "8.6"),)
GPU_80GB = (("NVIDIA H100 80GB HBM3", 80.0, "9.0"),)
GPU_24GB = (("NVIDIA GeForce RTX 4090", 24.0, "8.9"),)


@pytest.fixture(scope="module")
def profile(pair_set):
    hr, lr = pair_set
    return analyse(hr, lr, sample=64)


def val_for(profile) -> ValData:
    return ValData("holdout", str(profile.gt_dir), str(profile.lq_dir), 1, meta_info="/tmp/v.txt", train_meta_info="/tmp/t.txt")


def floats_are_floats(node, path=""):
    """Every key the schema types as a float must load as a Python float, not text."""
    float_keys = {"lr", "weight_decay", "ema_decay", "ema_power", "grad_clip_max_norm", "gamma", "loss_weight"}
    if isinstance(node, dict):
        for k, v in node.items():
            if k in float_keys:
                assert isinstance(v, float), f"{path}.{k} loaded as {type(v).__name__}"
            floats_are_floats(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            floats_are_floats(v, f"{path}[{i}]")


@pytest.mark.parametrize("flavor", ["fork", "upstream"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_preset_renders_a_strict_valid_config(profile, variant, flavor):
    plan = make_plan(fake_profile(GPU_24GB), profile, arch=f"paragonsr2_{variant}", val=val_for(profile), flavor=flavor)
    text = render(plan)
    loaded = yaml.safe_load(text)
    validate(loaded, "rendered")  # the strict schema of trainner-yaml.md
    assert loaded == plan.tree()
    floats_are_floats(loaded)
    has_fork = "dynamic_loss_scheduling" in loaded["train"]
    assert has_fork == (flavor == "fork")
    if flavor == "fork":
        autos = loaded["train"]["training_automations"]
        clip = autos.pop("AdaptiveGradientClipping")
        assert all(v == {"enabled": True} for k, v in autos.items() if k != "enabled")  # no hand-set knobs
        # the fork's schema has no grad_clip_max_norm: the start threshold lives in its automation
        assert "grad_clip_max_norm" not in loaded["train"] and clip["initial_threshold"] > 0
    else:
        assert loaded["train"]["grad_clip_max_norm"] > 0
    # Every value carries its provenance.
    value_lines, item_indent = [], None
    for ln in text.splitlines():
        indent = len(ln) - len(ln.lstrip())
        if ln.lstrip().startswith("- "):
            item_indent = indent  # list items are covered by their list's comment
            continue
        if item_indent is not None and indent > item_indent:
            continue
        item_indent = None
        if ":" in ln and not ln.lstrip().startswith("#") and not ln.rstrip().endswith(":"):
            value_lines.append(ln)
    assert all("# auto:" in ln or "# set" in ln for ln in value_lines), [ln for ln in value_lines if "#" not in ln]


def test_unknown_key_in_rendered_config_is_rejected(profile):
    tree = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_nano", val=val_for(profile)).tree()
    tree["train"]["optim_g"]["learning_rate"] = 1e-4
    with pytest.raises(AutosrError, match=r"train\.optim_g: unknown key 'learning_rate'"):
        validate(tree, "x.yml")
    tree = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_nano", val=val_for(profile)).tree()
    tree["train"]["total_iter"] = "1000"
    with pytest.raises(AutosrError, match="expected an integer"):
        validate(tree, "x.yml")


def test_measured_variants_plan_many_quick_steps(profile):
    for gpu in (GPU_24GB, GPU_80GB):
        plan = make_plan(fake_profile(gpu), profile, arch="paragonsr2_s", val=val_for(profile))
        assert plan.get("datasets.train.batch_size_per_gpu") == 64 and plan.get("datasets.train.accum_iter") == 1
        assert plan.get("train.optim_g.lr") == 2e-3 and plan.get("train.warmup_iter") == 100
        assert "GiB" in plan.values["datasets.train.batch_size_per_gpu"].reason  # what memory would allow


def test_same_dataset_different_gpus_gives_different_batch_and_accum(profile):
    small = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_m", val=val_for(profile))
    large = make_plan(fake_profile(GPU_80GB), profile, arch="paragonsr2_m", val=val_for(profile))
    b_small, b_large = small.values["datasets.train.batch_size_per_gpu"], large.values["datasets.train.batch_size_per_gpu"]
    assert b_large.value > b_small.value
    assert "GiB" in b_small.reason and "GiB" in b_large.reason
    assert large.get("datasets.train.accum_iter") == 1
    # On a CPU box the batch is small and accumulation reaches the preset's reference batch.
    cpu = make_plan(fake_profile(()), profile, arch="paragonsr2_m", val=val_for(profile))
    assert cpu.get("datasets.train.accum_iter") > 1
    assert "reference batch" in cpu.values["datasets.train.accum_iter"].reason
    assert cpu.get("use_amp") is False and large.get("amp_bf16") is True


def test_larger_batch_scales_lr_within_bounds(profile):
    small = make_plan(fake_profile(()), profile, arch="paragonsr2_m", val=val_for(profile))
    large = make_plan(fake_profile(GPU_80GB), profile, arch="paragonsr2_m", val=val_for(profile))
    assert large.get("train.optim_g.lr") > small.get("train.optim_g.lr")
    assert small.get("train.optim_g.lr") == 3.46e-5  # CPU: 8 × accum 2 = 16, √(16/12) × the preset 3e-5
    assert large.get("train.optim_g.lr") <= 2 * 3e-5 + 1e-12
    # measured variants: 1e-3 at batch 64, √-scaled down (at most ×0.5) for a smaller batch
    cpu_nano = make_plan(fake_profile(()), profile, arch="paragonsr2_nano", val=val_for(profile))
    assert cpu_nano.get("datasets.train.batch_size_per_gpu") == 8 and cpu_nano.get("train.optim_g.lr") == 1e-3


def test_arch_is_picked_from_the_hardware(profile):
    cpu_preset, reason = pick_arch(fake_profile(()), 2)
    assert cpu_preset.variant == "nano" and "CUDA" in reason
    big, _ = pick_arch(fake_profile(GPU_80GB), 2)
    mid, _ = pick_arch(fake_profile(GPU_8GB), 2)
    assert VARIANTS.index(big.variant) > VARIANTS.index(mid.variant) >= 0


def test_auto_arch_is_a_measured_preset(profile):
    big, reason = pick_arch(fake_profile(GPU_80GB), 2)
    assert big.variant == "s" and "only with --arch" in reason  # m, l, xl have no measured defaults


@pytest.mark.parametrize(("it_per_s", "budget", "arch"), [(15.0, 180, "paragonsr2_s"), (15.0, 60, "paragonsr2_nano"),
                                                          (3.0, 180, "paragonsr2_nano"), (None, 180, "paragonsr2_nano")])
def test_time_budget_chooses_nano_or_s_from_s_measured_speed(it_per_s, budget, arch):
    chosen, reason = budget_arch_choice(it_per_s, budget, "probe failed")
    assert chosen == arch and (("probe failed" in reason) if it_per_s is None else ("it/s" in reason))


def test_init_without_arch_measures_s_for_a_budget(tmp_path, pair_set, monkeypatch):
    import autosr.init_cmd
    import autosr.plan.calibrate
    from autosr.plan.calibrate import SpeedProbe

    monkeypatch.setattr(autosr.init_cmd, "probe", lambda _: fake_profile(GPU_80GB))
    probed: list[tuple[str, float]] = []

    def fake_speed(network, *, seconds, **_):  # s: 15 it/s, nano: 100 it/s
        probed.append((network["type"], seconds))
        return SpeedProbe(15.0 if network["type"].endswith("_s") else 100.0, 30, 2.0, 900.0, "fake probe")

    monkeypatch.setattr(autosr.plan.calibrate, "measure_speed", fake_speed)
    hr, lr = pair_set
    for budget, arch in ((600.0, "paragonsr2_s"), (90.0, "paragonsr2_nano")):
        probed.clear()
        plan = run_init(gt=hr, lq=lr, arch=None, val_gt=None, val_lq=None, output=tmp_path / "a.yml", name=None, scale=None,
                        overrides=[], flavor="fork", force=True, print_only=True, explain=False, sample=64,
                        time_budget=budget, calibrate=True)
        assert plan.get("network_g.type") == arch
        assert "time budget" in plan.values["network_g.type"].reason and plan.values["network_g.type"].source == "auto"
        assert probed[0][0] == "paragonsr2_s" and sum(s for _, s in probed) <= 0.05 * budget + 1e-9  # within 5%


def test_overrides_are_typed_and_checked(profile):
    assert parse_override("train.optim_g.lr=5e-4") == ("train.optim_g.lr", 5e-4)
    assert parse_override("train.total_iter=60000") == ("train.total_iter", 60000)
    with pytest.raises(AutosrError, match="did you mean 'total_iter'"):
        parse_override("train.total_iters=5")
    with pytest.raises(AutosrError, match="expected an integer"):
        parse_override("train.total_iter=lots")
    plan = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_nano", val=val_for(profile),
                     overrides=["train.total_iter=1234", "train.losses.1.loss_weight=0.1", "datasets.train.gt_size=64"])
    tree = plan.tree()
    assert tree["train"]["total_iter"] == 1234 and plan.values["train.total_iter"].source == "set"
    assert tree["train"]["losses"][1]["loss_weight"] == 0.1
    assert tree["datasets"]["train"]["gt_size"] == 64 and "lq_size" not in tree["datasets"]["train"]
    assert "total_iter: 1234  # set" in render(plan)


def test_small_images_shrink_the_patch(tmp_path):
    from autosr.synthetic import write_pairs

    hr, lr = write_pairs(tmp_path, 3, scale=2, size=(96, 80))
    ds = analyse(hr, lr)
    plan = make_plan(fake_profile(GPU_8GB), ds, arch="paragonsr2_nano", val=val_for(ds))
    assert plan.get("datasets.train.lq_size") == 40
    assert "40" in plan.values["datasets.train.lq_size"].reason


def test_scalar_formatting_round_trips():
    for value in (5e-4, 2e-4, 1e-5, 0.999, 1.0, 0.0, 1e7, 123, True, None, "a b: c", "C:\\data\\hr", "plain", [0.9, 0.99]):
        assert yaml.safe_load(scalar(value)) == value, value


def test_plan_reasons_reach_the_journal(profile, tmp_path):
    plan = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_nano", val=val_for(profile))
    path = write_plan(tmp_path / "auto.plan.json", decisions=plan.values, command="autosr init", config=tmp_path / "auto.yml",
                      hardware={}, dataset={}, time_budget_s=None, calibration=None)
    records = {k: (v, r) for k, v, r in plan_records(read_plan(path), plan.tree())}
    batch = plan.values["datasets.train.batch_size_per_gpu"]
    assert records["datasets.train.batch_size_per_gpu"] == (batch.value, batch.reason)  # typed value, not text
    assert "train.optim_g.lr" in records and "train.losses" in records
    edited = plan.tree()
    edited["train"]["optim_g"]["lr"] = 0.5
    value, reason = {k: (v, r) for k, v, r in plan_records(read_plan(path), edited)}["train.optim_g.lr"]
    assert value == 0.5 and reason.startswith("edited in the YAML after init")


# ---- the command ----------------------------------------------------------------------------


def test_init_cli_writes_config_and_holdout(pair_set, tmp_path):
    hr, lr = pair_set
    out = tmp_path / "auto.yml"
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "--arch", "paragonsr2_nano", "-o", str(out)])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load(out.read_text())
    train_list = Path(cfg["datasets"]["train"]["meta_info"]).read_text().split()
    val_list = Path(cfg["datasets"]["val"]["meta_info"]).read_text().split()
    assert len(val_list) == 1 and len(train_list) == 11 and not set(val_list) & set(train_list)
    # No overwrite without --force; --force works.
    again = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(out), "--force"]).exit_code == 0


def test_init_print_and_explain(pair_set, tmp_path):
    hr, lr = pair_set
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "--arch", "paragonsr2_tiny", "--print", "--explain",
                                 "--flavor", "upstream", "-o", str(tmp_path / "x.yml")])
    assert result.exit_code == 0, result.output
    assert "network_g:" in result.stdout and "dynamic_loss_scheduling" not in result.stdout
    assert not (tmp_path / "x.yml").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--arch", "paragonsr2_nanoo"], "did you mean 'paragonsr2_nano'"),
        (["--set", "train.total_iters=5"], "did you mean 'total_iter'"),
        (["--set", "train.optim_g.lr=fast"], "expected a number"),
        (["--val-gt", "somewhere"], "--val-gt and --val-lq go together"),
    ],
)
def test_init_bad_input_is_one_line_exit_2_nothing_written(pair_set, tmp_path, args, words):
    hr, lr = pair_set
    out = tmp_path / "auto.yml"
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.iterdir())


def test_init_missing_folder(tmp_path):
    result = runner.invoke(app, ["init", "--gt", str(tmp_path / "nope"), "--lq", str(tmp_path), "-o", str(tmp_path / "a.yml")])
    assert result.exit_code == 2 and "nope" in result.output


def test_set_values_feed_the_values_derived_from_them(profile):
    plan = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_nano", val=val_for(profile),
                     overrides=["train.total_iter=600", "datasets.train.batch_size_per_gpu=4"])
    assert plan.get("train.scheduler.milestones") == [450, 520]
    assert plan.get("val.val_freq") == 20 and plan.get("train.warmup_iter") == 60
    assert plan.get("datasets.train.accum_iter") == 1  # nano: more quick steps beat accumulation (measured)
    assert plan.get("train.optim_g.lr") == 1e-3  # 2e-3 at batch 64, √(4/64) bounded at ×0.5


def test_config_doc_is_in_sync_with_the_schema():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gen", root / "docs" / "gen_config_doc.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "docs" / "config.md").read_text(encoding="utf-8") == gen.render(), "run python docs/gen_config_doc.py"


def test_set_keys_new_to_the_plan_join_their_section(profile):
    plan = make_plan(fake_profile(GPU_8GB), profile, arch="paragonsr2_nano", val=val_for(profile),
                     overrides=["datasets.train.prefetch_mode=cuda", "train.optim_g.eps=1e-8"])
    loaded = yaml.safe_load(render(plan))
    assert loaded == plan.tree()
    assert loaded["datasets"]["train"]["prefetch_mode"] == "cuda" and loaded["datasets"]["train"]["name"]
    assert loaded["train"]["optim_g"]["eps"] == 1e-8 and loaded["train"]["optim_g"]["lr"]


def test_fork_flavour_refuses_a_key_the_fork_rejects(profile):
    # the fork's TrainOptions has no grad_clip_max_norm (docs/trainner-schema.md): a file with it would not load there
    with pytest.raises(AutosrError) as err:
        make_plan(fake_profile(GPU_24GB), profile, arch="paragonsr2_nano", val=val_for(profile),
                  overrides=["train.grad_clip_max_norm=5.0"])
    assert "initial_threshold" in str(err.value)
    upstream = make_plan(fake_profile(GPU_24GB), profile, arch="paragonsr2_nano", val=val_for(profile),
                         overrides=["train.grad_clip_max_norm=5.0"], flavor="upstream")
    assert upstream.get("train.grad_clip_max_norm") == 5.0


def test_init_warns_when_the_budget_is_too_short_to_beat_bicubic(profile):
    from autosr.init_cmd import MIN_SAMPLES_OVER_BICUBIC, too_short_to_beat_bicubic
    from autosr.plan.planner import Timing

    cpu = fake_profile(())
    short = make_plan(cpu, profile, arch="paragonsr2_nano", val=val_for(profile), timing=Timing(90.0, 10.0, "probe"))
    warning = too_short_to_beat_bicubic(short, Timing(90.0, 10.0, "probe"))
    samples = short.get("train.total_iter") * short.get("datasets.train.batch_size_per_gpu")
    assert samples < MIN_SAMPLES_OVER_BICUBIC and warning and "worse than bicubic" in warning and "--time" in warning
    long = make_plan(cpu, profile, arch="paragonsr2_nano", val=val_for(profile), timing=Timing(3600.0, 10.0, "probe"))
    assert too_short_to_beat_bicubic(long, Timing(3600.0, 10.0, "probe")) is None
    assert too_short_to_beat_bicubic(short, Timing(None, None, "")) is None  # no budget: the length is the user's


def test_plan_knows_the_gpu_count(profile):
    two = fake_profile(GPU_80GB * 2)
    one = fake_profile(GPU_80GB)
    nano2 = make_plan(two, profile, arch="paragonsr2_nano", val=val_for(profile))
    nano1 = make_plan(one, profile, arch="paragonsr2_nano", val=val_for(profile))
    assert "2 visible GPUs" in nano2.values["num_gpu"].reason and "one process per GPU" in nano2.values["num_gpu"].reason
    assert "× 2 GPUs = 128" in nano2.values["datasets.train.batch_size_per_gpu"].reason
    # measured presets: the per-step LR stays at the measured point, and the plan says why
    assert nano2.get("train.optim_g.lr") == nano1.get("train.optim_g.lr") and "not raised" in nano2.values["train.optim_g.lr"].reason
    assert any("2 GPUs" in note for note in nano2.notes)
    # unmeasured presets scale from the preset's reference batch with the global batch
    xl2 = make_plan(two, profile, arch="paragonsr2_xl", val=val_for(profile))
    xl1 = make_plan(one, profile, arch="paragonsr2_xl", val=val_for(profile))
    assert xl2.get("train.optim_g.lr") >= xl1.get("train.optim_g.lr") and "GPUs" in xl2.values["train.optim_g.lr"].reason


def test_checkpointing_is_planned_only_where_not_one_sample_fits_without_it(profile):
    from dataclasses import replace

    large = replace(profile, smallest_side=512)  # pro keeps its 256 px patch: ~11 GiB per sample without checkpointing
    small_card = make_plan(fake_profile(GPU_8GB), large, arch="paragonsr2_pro", val=val_for(profile))
    assert small_card.get("datasets.train.lq_size") == 256
    on = small_card.values["network_g.use_checkpointing"]
    assert on.value is True and "not one sample" in on.reason and "step time" in on.reason
    batch = small_card.values["datasets.train.batch_size_per_gpu"]
    assert batch.value > 1 and "with use_checkpointing" in batch.reason  # the batch counts the smaller activations
    assert yaml.safe_load(render(small_card, command="t"))["network_g"]["use_checkpointing"] is True
    # a card where samples fit: accumulation, not the recompute
    big_card = make_plan(fake_profile(GPU_80GB), large, arch="paragonsr2_pro", val=val_for(profile))
    off = big_card.values["network_g.use_checkpointing"]
    assert off.value is False and "fit without it" in off.reason
    # the user's value stands; a network without the key (nano…xl) gets none
    mine = make_plan(fake_profile(GPU_80GB), large, arch="paragonsr2_pro", val=val_for(profile),
                     overrides=["network_g.use_checkpointing=true"])
    assert mine.values["network_g.use_checkpointing"].value is True
    assert "with use_checkpointing" in mine.values["datasets.train.batch_size_per_gpu"].reason
    nano = make_plan(fake_profile(GPU_8GB), large, arch="paragonsr2_nano", val=val_for(profile))
    assert "network_g.use_checkpointing" not in nano.values
