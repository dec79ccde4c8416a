"""A run's data from its settings: the training crop source (cache or loader) and the validation images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autosr.errors import AutosrError
from autosr.images import collect_pairs, list_images, load_val_pairs, read_meta_info
from autosr.train.data import CropSource, build_crop_source, build_hr_crop_source
from autosr.train.degradations import Degrader
from autosr.train.metrics import REALISM_METRICS
from autosr.train.settings import Settings
from autosr.train.setup import DistInfo, Note, cache_budget_bytes
from autosr.train.validate import Validator


@dataclass
class DataParts:
    source: CropSource
    validator: Validator | None  # on the main process, when validation is on
    notes: list[Note]


def build_data(s: Settings, device: torch.device, dist: DistInfo, seed: int, autocast: Any,
               save_dir: Path | None) -> DataParts:
    """The training crop source (cache or loader) and, on the main process, the validator."""
    check_dataroots(s)
    budget, host_budget, budget_reason = cache_budget_bytes(device)
    d = s.data
    common: dict[str, Any] = dict(lq_size=d.lq_size, batch_size=d.batch_size, use_hflip=d.use_hflip, use_rot=d.use_rot,
                                  seed=seed, device=device, channels_last=s.runtime.channels_last, cache_budget_bytes=budget,
                                  host_cache_budget_bytes=host_budget, num_workers=d.num_workers or 0, rank=dist.rank,
                                  world_size=dist.world_size)
    notes: list[Note] = []
    source: CropSource
    if d.degradation is None:
        pairs = collect_pairs(list(d.dataroot_gt), list(d.dataroot_lq), list(d.meta_info) if d.meta_info else None)
        source = build_crop_source(pairs, scale=s.scale, **common)
    else:
        degrader = Degrader.from_options(d.degradation, d.degradation_opts, s.scale, seed)
        source = build_hr_crop_source(hr_files(d.dataroot_gt, d.meta_info), degrader, **common)
        notes.append(Note("degradation", d.degradation, DEGRADATION_REASONS[d.degradation]))
        notes += [Note("degradation.note", d.degradation, text) for text in degrader.notes]
    notes.append(Note("data", source.kind, f"{source.reason} (budget: {budget_reason})"))
    validator = None
    if s.val.enabled and dist.is_main:
        images = []
        for vset in s.val.sets:
            images += load_val_pairs(collect_pairs(list(vset.dataroot_gt), list(vset.dataroot_lq),
                                                   list(vset.meta_info) if vset.meta_info else None), scale=s.scale)
        # a realistic (GAN) run is also measured offline: detail energy and gradient similarity against the
        # truth need no download (LPIPS/DISTS do); not written into the YAML, which traiNNer must still load
        metrics = {**s.val.metrics, **({k: dict(v) for k, v in REALISM_METRICS.items() if k not in s.val.metrics}
                                       if s.gan is not None else {})}
        validator = Validator(images, metrics, scale=s.scale, tile=s.val.tile_size, device=device,
                              autocast=autocast, channels_last=s.runtime.channels_last,
                              save_dir=save_dir if s.val.save_img else None)
        # a metric whose weights are not here (LPIPS, DISTS): training goes on without it, said once
        notes += [Note(f"val.metrics.{name}", "skipped", reason) for name, reason in validator.dropped.items()]
    elif not s.val.enabled:
        notes.append(Note("val", "off", s.val.off_reason))
    return DataParts(source, validator, notes)


DEGRADATION_REASONS = {
    "bicubic": "HR alone: each LR crop is the HR crop shrunk by Pillow's antialiased bicubic, as paired sets are made",
    "realesrgan": "HR alone: LR made on the fly by traiNNer-redux's Real-ESRGAN degradations (docs/degradations.md)",
    "paragon": "HR alone: LR made on the fly by the ParagonSR2 fork's pipeline (high_order_degradation; docs/degradations.md)",
}


def hr_files(roots: tuple[str, ...], meta_info: tuple[str, ...] | None) -> list[str]:
    """Every image under the HR folders, or those a meta_info list names (relative to the first folder)."""
    files: dict[str, str] = {}
    for root in roots:
        files |= {key: str(path) for key, path in list_images(Path(root)).items()}
    if meta_info:
        wanted = [Path(name).with_suffix("").as_posix() for meta in meta_info for name in read_meta_info(Path(meta))]
        missing = [w for w in wanted if w not in files]
        if missing:
            raise AutosrError(f"datasets.train.meta_info lists {len(missing)} file(s) not in {', '.join(roots)} "
                              f"(first: {missing[0]})", "re-run autosr init to write the list anew")
        return [files[w] for w in wanted]
    if not files:
        raise AutosrError(f"datasets.train.dataroot_gt: no images in {', '.join(roots)}", "point it at a folder of images")
    return sorted(files.values())


def check_dataroots(s: Settings) -> None:
    """A moved or mistyped folder is named as such, before any meta_info line is read."""
    sets = [("train", s.data.dataroot_gt, s.data.dataroot_lq, s.data.meta_info)]
    sets += [(v.name, v.dataroot_gt, v.dataroot_lq, v.meta_info) for v in s.val.sets]
    for set_name, gts, lqs, metas in sets:
        for key, roots in (("dataroot_gt", gts), ("dataroot_lq", lqs)):
            for root in roots:
                if not Path(root).is_dir():
                    raise AutosrError(f"{s.source}: datasets.{set_name}.{key}: {root} is not a folder",
                                      "fix the path (moved the data? re-run autosr init)")
        for meta in metas or ():
            if not Path(meta).is_file():
                raise AutosrError(f"{s.source}: datasets.{set_name}.meta_info: {meta} does not exist",
                                  "re-run autosr init to write the pair lists, or remove the key")
