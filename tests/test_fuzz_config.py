"""Property-based: mutate a config `autosr init` writes (wrong types, missing keys, unknown keys at
every level, out-of-range and non-finite numbers, numbers as strings, empty lists, huge values) and
`--set` strings; loading must either accept it or raise AutosrError naming a key — never another
exception."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from autosr.config import apply_overrides, parse_override, validate  # noqa: E402
from autosr.errors import AutosrError  # noqa: E402
from autosr.init_cmd import run_init  # noqa: E402


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory, pair_set: tuple[Path, Path]) -> dict[str, Any]:
    hr, lr = pair_set
    out = tmp_path_factory.mktemp("fuzz") / "cfg.yml"
    run_init(gt=hr, lq=lr, arch="paragonsr2_nano", val_gt=None, val_lq=None, output=out, name="t", scale=None,
             overrides=["train.total_iter=100", "val.val_freq=50"], flavor="fork", force=True, print_only=False,
             explain=False, sample=64)
    return yaml.safe_load(out.read_text(encoding="utf-8"))


def paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in the tree (mapping keys and list indices)."""
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += paths(value, (*prefix, i))
    return out


BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["5e-4", "1e400", "-0", "auto", "", "nan", "~"]),
    st.lists(st.integers(), max_size=3), st.just([]), st.just({}), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
MUTATIONS = st.sampled_from(["replace", "delete", "unknown_key", "wrap_in_list"])


def mutate(tree: dict[str, Any], where: tuple[Any, ...], how: str, value: Any) -> dict[str, Any]:
    tree = copy.deepcopy(tree)
    *parents, last = where
    node: Any = tree
    for part in parents:
        node = node[part]
    if how == "replace":
        node[last] = value
    elif how == "delete":
        del node[last]
    elif how == "unknown_key":
        target = node[last]
        if isinstance(target, dict):
            target["surely_not_a_key"] = value
        else:
            node[last] = value
    else:
        node[last] = [node[last]]
    return tree


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), how=MUTATIONS, value=BAD_VALUES)
def test_mutated_configs_give_autosr_errors_only(planned: dict[str, Any], data: Any, how: str, value: Any) -> None:
    where = data.draw(st.sampled_from(paths(planned)))
    tree = mutate(planned, where, how, value)
    try:
        validate(tree, "fuzz.yml", need_training=False)
    except AutosrError as exc:
        text = str(exc)
        assert text.startswith("fuzz.yml") and "\n" not in text.strip(), text  # the file, one line
    # anything else (TypeError, KeyError, …) fails the test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), value=st.one_of(BAD_VALUES.map(str), st.text(max_size=20)))
def test_mutated_set_strings_give_autosr_errors_only(planned: dict[str, Any], data: Any, value: str) -> None:
    where = data.draw(st.sampled_from(paths(planned)))
    key = data.draw(st.sampled_from([".".join(map(str, where)), ".".join(map(str, where)) + "x", "x" + ".".join(map(str, where))]))
    text = data.draw(st.sampled_from([f"{key}={value}", key, f"={value}", f"{key}=={value}"]))
    try:
        parse_override(text)
        tree = apply_overrides(copy.deepcopy(planned), [text])
        validate(tree, "fuzz.yml", need_training=False)
    except AutosrError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip()


def test_the_unmutated_config_loads(planned: dict[str, Any]) -> None:
    assert validate(copy.deepcopy(planned), "fuzz.yml", need_training=False).name == "t"
    assert not math.isnan(float(planned["train"]["optim_g"]["lr"]))


@pytest.fixture(scope="module")
def planned_realistic(tmp_path_factory: pytest.TempPathFactory, pair_set: tuple[Path, Path]) -> dict[str, Any]:
    """What `init --gt photos/ --style realistic` writes: HR alone (Real-ESRGAN-style keys), network_d, GAN losses."""
    hr, _ = pair_set
    out = tmp_path_factory.mktemp("fuzz_real") / "cfg.yml"
    run_init(gt=hr, lq=None, arch="paragonsr2_nano", val_gt=None, val_lq=None, output=out, name="t", scale=2,
             overrides=["train.total_iter=100", "val.val_freq=50"], flavor="fork", force=True, print_only=False,
             explain=False, sample=64, style="realistic")
    return yaml.safe_load(out.read_text(encoding="utf-8"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), how=MUTATIONS, value=BAD_VALUES)
def test_mutated_realistic_hr_only_configs_give_autosr_errors_only(planned_realistic: dict[str, Any], data: Any,
                                                                   how: str, value: Any) -> None:
    """Past the schema: the run's settings (GAN, per-loss schedules) and the degradation built from them."""
    from autosr.train.degradations import Degrader
    from autosr.train.settings import build_settings

    where = data.draw(st.sampled_from(paths(planned_realistic)))
    tree = mutate(planned_realistic, where, how, value)
    try:
        s = build_settings(validate(tree, "fuzz.yml"))  # as `autosr train` loads it
        if s.data.degradation is not None:
            Degrader.from_options(s.data.degradation, s.data.degradation_opts, s.scale, seed=0)
    except AutosrError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)


def test_the_unmutated_realistic_config_builds(planned_realistic: dict[str, Any]) -> None:
    from autosr.train.settings import build_settings

    s = build_settings(validate(copy.deepcopy(planned_realistic), "fuzz.yml"))
    assert s.gan is not None and s.data.degradation == "realesrgan"


@pytest.fixture(scope="module")
def minimal_partial() -> dict[str, Any]:
    """The fork's zero-config file (a partial config: data, arch, losses, automations and nothing else)."""
    fork = Path(__file__).parent / "data" / "fork_configs" / "previous" / "2xParagonSR2_Nano_Minimal_0_Config.yml"
    return yaml.safe_load(fork.read_text(encoding="utf-8"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), how=MUTATIONS, value=BAD_VALUES)
def test_mutated_partial_configs_give_autosr_errors_only(minimal_partial: dict[str, Any], data: Any, how: str,
                                                         value: Any) -> None:
    """What `autosr train partial.yml` reads before it plans: is it partial, and what init is asked for."""
    from autosr.plan.complete import completion_inputs, partial_reasons

    where = data.draw(st.sampled_from(paths(minimal_partial)))
    tree = mutate(minimal_partial, where, how, value)
    try:
        if partial_reasons(tree):
            completion_inputs(tree, "fuzz.yml")
    except AutosrError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
