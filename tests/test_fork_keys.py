"""The ParagonSR2 fork's automation names and section keys, read as the fork reads them (autosr/fork_keys.py).

The names and keys below are copied from the fork's source (github delafer/traiNNer-redux b676e3a:
traiNNer/utils/training_automations.py, traiNNer/losses/dynamic_loss_scheduling.py,
traiNNer/models/sr_model.py) so that a change of autosr's tables shows up here as a difference.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from fork_configs import CONFIGS, prepared

from autosr import fork_keys, schema
from autosr.config import apply_overrides, read_yaml, spec_at, validate
from autosr.errors import AutosrError
from autosr.fork_keys import AUTOMATIONS_SECTION, DLS_SECTION, FORK_READS, UNUSED, canonical_automation, unused_fork_keys
from autosr.schedule import registry

# Every name the fork's AUTOMATION_REGISTRY answers to (its classes, and the manager's snake_case aliases)
# → autosr's automation.
FORK_NAMES = {
    "IntelligentLearningRateScheduler": "IntelligentLearningRateScheduler",
    "DynamicBatchAndPatchSizeOptimizer": "DynamicBatchSizeOptimizer",
    "AdaptiveGradientClipping": "AdaptiveGradientClipping",
    "IntelligentEarlyStopping": "IntelligentEarlyStopping",
    "adaptive_gradient_clipping": "AdaptiveGradientClipping",
    "intelligent_learning_rate_scheduler": "IntelligentLearningRateScheduler",
    "dynamic_batch_and_patch_size_optimizer": "DynamicBatchSizeOptimizer",
    "intelligent_early_stopping": "IntelligentEarlyStopping",
}


def tree(dls: dict | None = None, autos: dict | None = None) -> dict[str, Any]:
    """The smallest config that validate() checks the two sections of (no training parts needed)."""
    train: dict[str, Any] = {"total_iter": 1000}
    if dls is not None:
        train[DLS_SECTION] = dls
    if autos is not None:
        train[AUTOMATIONS_SECTION] = autos
    return {"name": "t", "scale": 2, "num_gpu": "auto", "path": {}, "train": train}


def load(dls: dict | None = None, autos: dict | None = None) -> dict[str, Any]:
    return validate(tree(dls, autos), "t.yml", need_training=False).data["train"]


def nested(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


# ---- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelt", [*FORK_NAMES, *registry.AUTOMATION_NAMES])
def test_every_name_the_fork_accepts_maps_to_autosrs_automation(spelt: str) -> None:
    name = FORK_NAMES.get(spelt, spelt)
    assert canonical_automation(spelt) == name
    assert canonical_automation(spelt.lower()) == canonical_automation(spelt.upper()) == name  # the registry lower-cases
    autos = load(autos={"enabled": True, spelt: {"enabled": True}})[AUTOMATIONS_SECTION]
    assert autos == {"enabled": True, name: {"enabled": True}}  # downstream sees autosr's name only


def test_the_spellings_table_covers_autosrs_automations_and_nothing_else() -> None:
    assert tuple(fork_keys.SPELLINGS) == registry.AUTOMATION_NAMES
    assert set(FORK_NAMES.values()) <= set(registry.AUTOMATION_NAMES)
    every = fork_keys.all_spellings()
    assert len({s.lower() for s in every}) == len(every)  # no spelling means two automations


@pytest.mark.parametrize(("first", "second"), [
    ("IntelligentLearningRateScheduler", "intelligent_learning_rate_scheduler"),
    ("DynamicBatchSizeOptimizer", "DynamicBatchAndPatchSizeOptimizer"),
    ("adaptive_gradient_clipping", "AdaptiveGradientClipping"),
    ("IntelligentEarlyStopping", "intelligentearlystopping"),
])
def test_two_spellings_of_one_automation_are_refused_naming_both(first: str, second: str) -> None:
    with pytest.raises(AutosrError) as err:
        load(autos={"enabled": True, first: {"enabled": True}, second: {"enabled": False}})
    assert f"'{first}' and '{second}'" in err.value.message and canonical_automation(first) in err.value.message
    assert err.value.message.startswith("t.yml: train.training_automations:") and "keep one" in err.value.hint


def test_a_misspelt_name_or_key_still_gets_did_you_mean() -> None:
    with pytest.raises(AutosrError, match="did you mean 'intelligent_learning_rate_scheduler'") as err:
        load(autos={"intelligent_learning_rate_schedular": {"enabled": True}})
    assert "the fork ignores unknown keys" in err.value.hint
    with pytest.raises(AutosrError, match="did you mean 'DynamicBatchAndPatchSizeOptimizer'"):
        load(autos={"DynamicBatchAndPatchSizeOptimiser": {}})
    with pytest.raises(AutosrError, match=r"IntelligentEarlyStopping: unknown key 'patiense' \(did you mean 'patience'\?\)") as err:
        load(autos={"intelligent_early_stopping": {"patiense": 5}})
    assert "the fork ignores unknown keys" in err.value.hint
    with pytest.raises(AutosrError, match="did you mean 'vram_history_size'"):
        load(autos={"DynamicBatchAndPatchSizeOptimizer": {"vram_histroy_size": 50}})
    with pytest.raises(AutosrError, match="did you mean 'architecture_type'"):
        load(dls={"enabled": True, "architecture_typ": "x"})


def test_keys_the_fork_never_reads_stay_errors() -> None:
    # the fork's own config generator (hardware_detection.py) writes these; no automation reads them
    for key in ("min_threshold", "max_threshold", "adjustment_factor", "monitoring_frequency", "gradient_history_size"):
        with pytest.raises(AutosrError, match=f"unknown key '{key}'"):
            load(autos={"AdaptiveGradientClipping": {key: 1}})
    with pytest.raises(AutosrError, match="unknown key 'fallback'"):  # the fork has no AdaptiveValidationFrequency
        load(autos={"AdaptiveValidationFrequency": {"fallback": {}}})


# ---- keys -----------------------------------------------------------------------------------------


def _sections() -> list[tuple[str, str]]:
    """(FORK_READS section, its dotted path in the config)."""
    out = []
    for section in FORK_READS:
        where = f"train.{section}" if section in (DLS_SECTION, AUTOMATIONS_SECTION) else f"train.{AUTOMATIONS_SECTION}.{section}"
        out.append((section, where))
    return out


@pytest.mark.parametrize(("section", "where"), _sections())
def test_every_key_the_fork_reads_is_accepted(section: str, where: str) -> None:
    for key, default in FORK_READS[section].items():
        spec_at(f"{where}.{key}")  # a path the schema knows (raises otherwise)
        sub = nested(key, default)
        if section == DLS_SECTION:
            got = load(dls=sub)[DLS_SECTION]
        elif section == AUTOMATIONS_SECTION:
            got = load(autos=sub)[AUTOMATIONS_SECTION]
        else:
            got = load(autos={section: sub})[AUTOMATIONS_SECTION][section]
        assert got == ({"monitor_metric": "psnr"} if key == "monitor_metric" else sub), key


@pytest.mark.parametrize(("section", "where"), _sections())
def test_the_fork_table_is_what_the_schema_accepts(section: str, where: str) -> None:
    """Each section accepts exactly: `enabled`, autosr's own keys (they act), and the fork's other keys
    (reported unused) — and every key the fork reads is one of those."""
    spec = spec_at(where)
    assert isinstance(spec, schema.Struct) and spec.fork_free_form
    if section == AUTOMATIONS_SECTION:
        assert set(spec.keys) == {"enabled", *registry.AUTOMATION_NAMES}
        return
    own = set((registry.DLS if section == DLS_SECTION else registry.AUTOMATIONS[section]).options)
    unused = set(UNUSED.get(section, {}))
    assert set(spec.keys) == {"enabled"} | own | unused
    assert not own & unused  # a key either acts or is reported, never both
    read = {key.split(".")[0] for key in FORK_READS[section]}
    assert read - {"enabled"} <= own | unused  # nothing the fork reads is refused or silently dropped
    assert unused <= read  # nothing is reported as the fork's that the fork does not read


def test_autosr_only_keys_are_the_known_extensions() -> None:
    """What autosr accepts beyond the fork: its own tuning keys and AdaptiveValidationFrequency."""
    extra = {
        section: sorted(set(registry.AUTOMATIONS[section].options) - {k.split(".")[0] for k in FORK_READS[section]})
        for section in FORK_READS if section in registry.AUTOMATIONS
    }
    assert extra == {"IntelligentLearningRateScheduler": [], "DynamicBatchSizeOptimizer": [],
                     "AdaptiveGradientClipping": ["calibration_steps", "initial_threshold", "percentile"],
                     "IntelligentEarlyStopping": []}
    assert set(registry.DLS.options) - set(FORK_READS[DLS_SECTION]) == {"phases"}


def test_unused_keys_are_reported_once_each_with_what_autosr_does_instead() -> None:
    autos: dict[str, Any] = {"enabled": True}
    for name, keys in UNUSED.items():
        if name != DLS_SECTION:
            autos[fork_keys.SPELLINGS[name][0] if fork_keys.SPELLINGS[name] else name] = {
                "enabled": True, **{k: copy.deepcopy(FORK_READS[name][k]) for k in keys}}
    dls = {"enabled": True, **nested("training_config.total_iterations", 100), "architecture_type": "paragonsr2_nano",
           "dataset_info": {"edge_density": 0.5}, "momentum": 0.9}
    raw = tree(dls, autos)
    reported = unused_fork_keys(raw)
    expected = [(f"train.{DLS_SECTION}.{k}", UNUSED[DLS_SECTION][k]) for k in ("training_config", "architecture_type", "dataset_info")]
    for spelt, section in autos.items():
        if spelt != "enabled":
            name = canonical_automation(spelt)
            assert name is not None
            expected += [(f"train.{AUTOMATIONS_SECTION}.{spelt}.{k}", UNUSED[name][k]) for k in section if k != "enabled"]
    assert reported == expected  # the key as written, in the config's order; keys that act are not listed
    assert len(reported) == sum(len(v) for v in UNUSED.values())
    for key, reason in reported:
        assert reason and "\n" not in reason and "autosr" in reason, key
    # after loading, the same keys under autosr's names
    data = validate(raw, "t.yml", need_training=False).data
    assert [r for _, r in unused_fork_keys(data)] == [r for _, r in reported]
    assert ("train.training_automations.DynamicBatchSizeOptimizer.min_lq_size",
            UNUSED["DynamicBatchSizeOptimizer"]["min_lq_size"]) in unused_fork_keys(data)


def test_switched_off_sections_and_clean_configs_report_nothing() -> None:
    assert unused_fork_keys(tree({"enabled": False, "architecture_type": "x"},
                                 {"enabled": True, "intelligent_early_stopping": {"enabled": False, "min_epochs": 5}})) == []
    assert unused_fork_keys(tree(None, {"enabled": False, "AdaptiveGradientClipping": {"max_adjustments": 5}})) == []
    assert unused_fork_keys(tree({"enabled": True, "momentum": 0.9}, {"IntelligentLearningRateScheduler": {"plateau_patience": 500}})) == []
    assert unused_fork_keys({}) == [] and unused_fork_keys({"train": None}) == []


# ---- values ---------------------------------------------------------------------------------------


def test_values_convert_as_the_fork_converts_and_ranges_stay_checked_where_autosr_uses_them() -> None:
    got = load(dls={"enabled": True, "min_weight": "1e-6", "baseline_iterations": 100.0},
               autos={"intelligent_learning_rate_scheduler": {"plateau_patience": "1e3", "min_lr_factor": "0.5"},
                      "intelligent_early_stopping": {"monitor_metric": "val/psnr", "max_adjustments": "3"}})
    assert got[DLS_SECTION]["min_weight"] == 1e-6 and got[DLS_SECTION]["baseline_iterations"] == 100
    lr = got[AUTOMATIONS_SECTION]["IntelligentLearningRateScheduler"]
    assert lr == {"plateau_patience": 1000, "min_lr_factor": 0.5}
    assert isinstance(lr["plateau_patience"], int)
    early = got[AUTOMATIONS_SECTION]["IntelligentEarlyStopping"]
    assert early == {"monitor_metric": "psnr", "max_adjustments": 3}  # the fork's 'val/psnr' is the metric 'psnr'
    with pytest.raises(AutosrError, match="expected an integer"):  # int() would cut it: refused, not truncated
        load(autos={"IntelligentLearningRateScheduler": {"plateau_patience": 1000.5}})
    with pytest.raises(AutosrError, match=r"target_vram_usage: 1.5 is out of range"):
        load(autos={"DynamicBatchAndPatchSizeOptimizer": {"target_vram_usage": "1.5"}})
    with pytest.raises(AutosrError, match=r"adaptation_rate: 0.7 is out of range"):
        load(dls={"adaptation_rate": 0.7})
    with pytest.raises(AutosrError, match="expected an integer"):  # unused keys keep their type
        load(autos={"DynamicBatchAndPatchSizeOptimizer": {"min_lq_size": "big"}})


def test_set_reaches_an_automation_however_it_is_spelt() -> None:
    raw = tree(None, {"enabled": True, "intelligent_learning_rate_scheduler": {"enabled": True}})
    for key in ("IntelligentLearningRateScheduler", "intelligent_learning_rate_scheduler"):
        out = apply_overrides(raw, [f"train.training_automations.{key}.plateau_patience=700"])
        assert out["train"][AUTOMATIONS_SECTION] == {
            "enabled": True, "intelligent_learning_rate_scheduler": {"enabled": True, "plateau_patience": 700}}
        data = validate(out, "t.yml", need_training=False).data
        assert data["train"][AUTOMATIONS_SECTION]["IntelligentLearningRateScheduler"]["plateau_patience"] == 700
    out = apply_overrides(tree(), ["train.training_automations.dynamic_batch_and_patch_size_optimizer.max_batch_size=8"])
    assert out["train"][AUTOMATIONS_SECTION] == {"DynamicBatchSizeOptimizer": {"max_batch_size": 8}}


# ---- the fork's own configs -----------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_the_forks_configs_load_as_far_as_these_sections_go(config: Path, tmp_path: Path) -> None:
    path = prepared(config, tmp_path)
    raw = read_yaml(path)
    try:
        validate(raw, path)
    except AutosrError as exc:  # other sections (datasets, losses, …) are not this test's business
        assert DLS_SECTION not in exc.message and AUTOMATIONS_SECTION not in exc.message, exc.message
    # the two sections alone: whatever else the file holds, they load
    train = raw.get("train") or {}
    data = load(train.get(DLS_SECTION), train.get(AUTOMATIONS_SECTION))
    assert set(data.get(AUTOMATIONS_SECTION, {})) <= {"enabled", *registry.AUTOMATION_NAMES}
    for key, reason in unused_fork_keys(raw):
        assert key.startswith("train.") and reason


def test_the_forks_configs_use_the_aliases_and_unused_keys_this_covers(tmp_path: Path) -> None:
    """The 23 configs do spell automations the fork's ways and do set keys autosr does not use."""
    spellings: set[str] = set()
    reported: set[str] = set()
    for config in CONFIGS:
        raw = read_yaml(config)
        autos = (raw.get("train") or {}).get(AUTOMATIONS_SECTION) or {}
        spellings |= {k for k in autos if k != "enabled"}
        reported |= {key.rsplit(".", 1)[-1] for key, _ in unused_fork_keys(raw)}
    assert {"intelligent_learning_rate_scheduler", "adaptive_gradient_clipping", "DynamicBatchAndPatchSizeOptimizer"} <= spellings
    assert {"min_lq_size", "max_lq_size", "adjustment_frequency", "vram_history_size",
            "convergence_threshold", "convergence_log_frequency"} <= reported


def test_docs_name_every_spelling_and_every_unused_key() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "scheduler.md").read_text(encoding="utf-8")
    section = text.split("## The fork's names and keys", 1)[1].split("\n## ", 1)[0]
    for spelling in fork_keys.all_spellings():
        assert f"`{spelling}`" in section, spelling
    for keys in UNUSED.values():
        for key in keys:
            assert f"`{key}`" in section, key
