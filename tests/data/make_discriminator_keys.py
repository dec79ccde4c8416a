"""Writes tests/data/discriminator_keys.json from traiNNer's own discriminator modules (run by hand, not a test).

    python tests/data/make_discriminator_keys.py UPSTREAM_GIT_DIR FORK_GIT_DIR

UPSTREAM_GIT_DIR: the-database/traiNNer-redux (dunet, unetdiscriminatorsn), FORK_GIT_DIR: delafer/traiNNer-redux
(munet), both bare or normal git directories; the arch files are read at HEAD with ``git show`` into a
temporary folder, their registry import stubbed, and spandrel's DySample loaded from its file (importing
spandrel itself pulls in torchvision). For each variant the JSON holds the state-dict names and shapes,
the parameter counts, the frozen parameters, and the output on tests/discriminator_probe.py's
deterministic weights and input. The tests compare autosr's modules against it without importing traiNNer.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: discriminator_probe
from discriminator_probe import PROBE_SIZES, fill_deterministic, fingerprint, probe_input  # noqa: E402

REGISTRY_STUB = "class _R:\n    def register(self, *a, **k):\n        return lambda cls: cls\nARCH_REGISTRY = _R()\n"
FILES = (("upstream", "traiNNer/archs/dunet_arch.py"), ("upstream", "traiNNer/archs/discriminator_arch.py"),
         ("fork", "traiNNer/archs/munet_arch.py"))


def load_dysample() -> None:
    """spandrel's DySample module under its own name, without running spandrel's __init__."""
    spec = importlib.util.find_spec("spandrel")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "architectures/__arch_helpers/dysample.py"
    name = "spandrel.architectures.__arch_helpers.dysample"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    assert mod_spec is not None and mod_spec.loader is not None
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    for parent in ("spandrel", "spandrel.architectures", "spandrel.architectures.__arch_helpers"):
        sys.modules[parent] = types.ModuleType(parent)
    sys.modules[name] = module


def main(upstream: str, fork: str) -> None:
    repos = {"upstream": upstream, "fork": fork}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for folder in ("traiNNer/archs", "traiNNer/utils"):
            (root / folder).mkdir(parents=True)
        for init in ("traiNNer/__init__.py", "traiNNer/archs/__init__.py", "traiNNer/utils/__init__.py"):
            (root / init).write_text("")
        (root / "traiNNer/utils/registry.py").write_text(REGISTRY_STUB)
        for which, path in FILES:
            shown = subprocess.run(["git", "-C", repos[which], "show", f"HEAD:{path}"], check=True,
                                   capture_output=True, text=True)
            (root / path).write_text(shown.stdout)
        load_dysample()
        sys.path.insert(0, tmp)
        from traiNNer.archs.discriminator_arch import UNetDiscriminatorSN
        from traiNNer.archs.dunet_arch import DUnet
        from traiNNer.archs.munet_arch import MUNet

        variants: dict[str, tuple[type[torch.nn.Module], dict[str, object]]] = {
            "dunet": (DUnet, {}),
            "dunet_feat32": (DUnet, {"num_feat": 32}),
            "unetdiscriminatorsn": (UNetDiscriminatorSN, {}),
            "unetdiscriminatorsn_noskip_feat32": (UNetDiscriminatorSN, {"num_feat": 32, "skip_connection": False}),
            "munet": (MUNet, {}),
            "munet_feat16": (MUNet, {"num_feat": 16}),
            "munet_feat32_122": (MUNet, {"num_feat": 32, "ch_mult": (1, 2, 2)}),
        }
        commits = {which: subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], check=True, capture_output=True,
                                         text=True).stdout.strip() for which, repo in repos.items()}
        out: dict[str, object] = {"_source": {"upstream the-database/traiNNer-redux": commits["upstream"],
                                              "fork delafer/traiNNer-redux": commits["fork"]}}
        for key, (cls, options) in variants.items():
            torch.manual_seed(0)
            net = cls(**options)
            state = net.state_dict()
            entry: dict[str, object] = {
                "type": key.split("_")[0],
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
                "parameters": sum(p.numel() for p in net.parameters()),
                "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
                "state_dict": {k: list(v.shape) for k, v in state.items()},
                "frozen": sorted(k for k, p in net.named_parameters() if not p.requires_grad),
                "init_pos": {k: [float(x) for x in v.flatten()] for k, v in state.items() if k.endswith("init_pos")},
            }
            if key in PROBE_SIZES:
                fill_deterministic(net)
                with torch.no_grad():
                    entry["probe"] = fingerprint(net(probe_input(PROBE_SIZES[key])))
            out[key] = entry
            print(key, entry["parameters"], entry["trainable"], len(state))
        (HERE / "discriminator_keys.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
