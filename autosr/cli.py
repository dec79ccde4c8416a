"""The `autosr` command line. Thin: parse arguments, call one function, print.

Heavy modules (torch above all) are imported inside the commands so that `autosr --help`
stays fast.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from autosr import __version__
from autosr.errors import AutosrError

app = typer.Typer(
    name="autosr",
    help="Zero-config training of super-resolution models: detect → init → train → report.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(message: str, code: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    # escaped: messages quote paths and other programs' errors ("[/__w/…/pair.cc:537]" is not markup)
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}", markup=True)
    raise typer.Exit(code)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn AutosrError into one red line (exit 2, or 1 at run time); anything unexpected into a
    short message plus the path of a log holding the traceback — never a traceback on screen."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AutosrError as exc:
            _fail(str(exc), exc.exit_code)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence for the user
            import os

            # A private, unique file (mode 0600, created exclusively): never a fixed name in a shared /tmp.
            where = "not saved: no writable temp folder"
            try:
                fd, name = tempfile.mkstemp(prefix="autosr-crash-", suffix=".log")
                with os.fdopen(fd, "w", encoding="utf-8") as log:
                    log.write(traceback.format_exc())
                where = f"traceback in {name}"
            except OSError:
                pass
            _fail(f"unexpected {type(exc).__name__}: {exc} ({where}; please report it)", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"autosr {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Zero-config training of super-resolution models."""


@app.command()
@guarded
def detect(
    json_out: Annotated[bool, typer.Option("--json", help="Print the profile as JSON (schema: docs/detect-json.md).")] = False,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where runs will be written (for the free-disk figure).")] = Path("runs"),
) -> None:
    """Probe GPUs, CPU, RAM and disk; classify the hardware tier; recommend training settings."""
    from autosr.hardware import probe
    from autosr.plan.detect_view import print_report, to_json
    from autosr.plan.recommend import recommend

    profile = probe(runs_dir)
    advice = recommend(profile)
    if json_out:
        sys.stdout.write(to_json(profile, advice) + "\n")
    else:
        print_report(profile, advice)


class Flavor(StrEnum):
    fork = "fork"
    upstream = "upstream"


@app.command()
@guarded
def init(
    gt: Annotated[Path | None, typer.Option("--gt", help="Folder of high-resolution (ground truth) images.")] = None,
    lq: Annotated[Path | None, typer.Option(
        "--lq", help="Folder of low-resolution images, same file stems as --gt (default: none, the LR is made on the fly).")] = None,
    arch: Annotated[str | None, typer.Option(
        "--arch", help="paragonsr2_<nano|micro|tiny|xs|s|m|l|xl>; default: s or nano, measured for the budget.")] = None,
    val_gt: Annotated[Path | None, typer.Option("--val-gt", help="Validation HR folder (default: hold out a few training pairs).")] = None,
    val_lq: Annotated[Path | None, typer.Option("--val-lq", help="Validation LR folder.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="YAML file to write.")] = Path("auto.yml"),
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: from scale, arch and folder).")] = None,
    scale: Annotated[int | None, typer.Option("--scale", help="Override the detected scale (2, 3 or 4).")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a key: --set train.total_iter=60000 (repeatable).")] = None,
    flavor: Annotated[Flavor, typer.Option(
        "--flavor", help="fork: with the ParagonSR2 automation sections; upstream: plain traiNNer-redux.")] = Flavor.fork,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Write the YAML to stdout instead of a file.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Print every planned value with its reason.")] = False,
    sample: Annotated[int, typer.Option("--sample", min=1, help="How many pairs to read for the analysis.")] = 256,
    time: Annotated[str | None, typer.Option(
        "--time", help="The time you have for training (20m, 2h, 1h30m): every length-dependent value is fitted to it.")] = None,
    no_calibrate: Annotated[bool, typer.Option(
        "--no-calibrate",
        help="Do not measure this machine (training speed, memory; with --time, batch × LR trials on your data).")] = False,
    style: Annotated[str, typer.Option(
        "--style", help="fidelity (default): PSNR-true detail; realistic: a fidelity phase, then perceptual + GAN.")] = "fidelity",
    degradation: Annotated[str | None, typer.Option(
        "--degradation", help="Without --lq, how the LR is made: bicubic (fidelity's default) or realesrgan (realistic's).")] = None,
    pretrain: Annotated[Path | None, typer.Option(
        "--pretrain", help="Start the generator from this model file (realistic: the GAN phase starts at once).")] = None,
    trials: Annotated[bool, typer.Option(
        "--trials", help="With --time of 25 minutes or more on a GPU: batch × LR trials on your data (not yet measured "
                         "helping, so off by default).")] = False,
    from_: Annotated[Path | None, typer.Option(
        "--from", help="A partial config (keys missing or `auto`): plan the rest, keep every key it sets.")] = None,
) -> None:
    """Analyse a dataset, plan every setting for this machine, and write a commented traiNNer-redux YAML."""
    from autosr.durations import parse_duration
    from autosr.init_cmd import run_init, run_init_from

    if from_ is not None:
        if gt is not None or lq is not None:
            raise AutosrError("--from takes the folders from the partial config", "drop --gt/--lq, or --from")
        run_init_from(from_, output=output, force=force, print_only=print_only, explain=explain, sample=sample,
                      flavor=flavor.value, time_budget=parse_duration(time) if time is not None else None,
                      calibrate=not no_calibrate)
        return
    if gt is None:
        raise AutosrError("--gt is required: the folder of high-resolution images", "or --from a partial config")
    run_init(
        gt=gt, lq=lq, arch=arch, val_gt=val_gt, val_lq=val_lq, output=output, name=name, scale=scale,
        overrides=sets or [], flavor=flavor.value, force=force, print_only=print_only, explain=explain,
        sample=sample, time_budget=parse_duration(time) if time is not None else None, calibrate=not no_calibrate,
        style=style, degradation=degradation, pretrain=pretrain, trials=trials,
    )


@app.command()
@guarded
def train(
    config: Annotated[Path, typer.Argument(help="The YAML that `autosr init` wrote (or a hand-edited one).")],
    out: Annotated[Path, typer.Option("--out", help="Folder that holds run folders.")] = Path("runs"),
    resume: Annotated[bool | None, typer.Option(
        "--resume/--no-resume", help="Continue from the run's last checkpoint (default: when one exists).")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a key for this run: --set train.total_iter=2000.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Load, build, run one step, print the plan, exit.")] = False,
    time: Annotated[str | None, typer.Option(
        "--time", help="Wall-clock budget for the whole run (20m, 2h, 1h30m): the length is fitted to this machine's "
                       "measured speed. Default: the budget `init --time` planned, if any.")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Print the runtime scheduler's settings and per-phase values, with reasons, before training "
                          "(with --dry-run: and stop).")] = False,
    gpus: Annotated[int | None, typer.Option(
        "--gpus", min=1, help="Train on at most this many GPUs (default: num_gpu in the YAML; auto = every visible GPU). "
                              "Several GPUs: one process each, started by autosr.")] = None,
) -> None:
    """Train the model the YAML describes, leaving a run folder with checkpoints, metrics and the decision journal."""
    from autosr.durations import parse_duration, since_process_start
    from autosr.train.launch import maybe_launch
    from autosr.train_cmd import complete_if_partial, train_from_file

    seconds = parse_duration(time) if time is not None else None
    if not os.environ.get("WORLD_SIZE"):  # a partial config is planned once, before any process starts
        planned = complete_if_partial(config, out, time_budget=seconds, explain=explain)
        argv = [str(planned) if a == str(config) else a for a in sys.argv[1:]]
        config = planned
    else:
        argv = sys.argv[1:]
    launched = maybe_launch(config, sets or [], gpus, dry_run=dry_run, argv=argv)
    if launched is not None:  # the ranks ran in their own processes: this is their exit code
        if launched:
            raise typer.Exit(launched)
        return
    code = train_from_file(config, out_dir=out, resume=resume, overrides=sets or [], dry_run=dry_run,
                           time_budget=seconds, spent=since_process_start(), explain=explain)
    if code:
        raise typer.Exit(code)


@app.command()
@guarded
def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Where to write the example data and run.")] = Path("autosr-demo"),
    iters: Annotated[int, typer.Option("--iters", min=10, help="Training iterations for the example run.")] = 600,
) -> None:
    """Write a small paired example set, run `init` and a short `train` on it, and show where the results are."""
    from autosr.demo import run_demo

    run_demo(folder, iters=iters)


@app.command()
@guarded
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="A run folder (runs/<name>), several to compare, or runs/ to list them.")],
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Where to write the HTML report (default: <run>/report.html; its folder must exist).")
    ] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="Only print the summary.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON (docs/report-json.md); no page unless --html.")
    ] = False,
    no_images: Annotated[bool, typer.Option("--no-images", help="Leave out the validation crops (no model is run).")] = False,
) -> None:
    """What happened in a run: best metrics vs bicubic, speed, every automatic decision, plots, validation crops
    (LR, bicubic, autosr, HR); several runs side by side."""
    from autosr.report.summary import report as make_report

    make_report(list(run_dirs), html_path=html_out, write_html=not no_html, as_json=as_json, images=not no_images)


@app.command()
@guarded
def presets() -> None:
    """List the architecture presets with their real parameter counts and starting values."""
    from autosr.plan.presets_view import print_presets

    print_presets()


@app.command()
@guarded
def upscale(
    model: Annotated[Path, typer.Argument(
        metavar="MODEL", help="A model file (.safetensors) or a run folder (its best model, else the newest).")],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="An image, or a folder of images (recursively).")],
    output: Annotated[Path, typer.Argument(
        metavar="OUTPUT", help="A .png file for one image, else a folder: sub-folders and names are kept, as PNG.")],
    tile: Annotated[int | None, typer.Option(
        "--tile", help="Tile side in input pixels (default: from free GPU memory; 512 on the CPU). Tiles overlap: no seams.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: cuda when available).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Half precision (CUDA only).")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 (CUDA only).")] = False,
) -> None:
    """Upscale images with a trained model. Colour goes through the model; an alpha channel is upscaled apart with
    bicubic interpolation. Grayscale stays grayscale, 16-bit stays 16-bit; inputs are never overwritten;
    unreadable files are skipped and listed (exit 1)."""
    from rich.console import Console
    from rich.markup import escape

    from autosr.use.upscale import upscale as run_upscale

    result, info = run_upscale(model, input_path, output, tile=tile, device=device, fp16=fp16, bf16=bf16)
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"{len(result.done)} image(s) upscaled ×{info.scale} with {escape(str(info.path))} → {escape(str(output))}")
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}")
    if result.failed:
        err.print(f"[red]{len(result.failed)} file(s) skipped:[/red]")
        for path, why in result.failed:
            err.print(f"  {escape(str(path))}: {escape(why)}")
        raise typer.Exit(1)


@app.command()
@guarded
def export(
    model: Annotated[Path, typer.Argument(metavar="RUN_DIR|MODEL", help="A run folder (its best model, else the newest) or a model file.")],
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Write ONNX here (fp32), verified with onnxruntime.")] = None,
    fp16: Annotated[bool, typer.Option(
        "--fp16", help="ONNX in float16 (weights, input, output): half the size; checked within 1/255 of fp32 PyTorch.")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (17 or newer).")] = 17,
    static: Annotated[tuple[int, int] | None, typer.Option(
        "--static", metavar="H W", help="A fixed 1×C×H×W input instead of dynamic batch, height and width.")] = None,
    safetensors: Annotated[Path | None, typer.Option(
        "--safetensors", help="Write a standalone model file with its metadata here; a folder gets "
                              "{scale}x_{name}_{variant}_{iter/1000}k.safetensors.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The model's name in that file name (default: the run's).")] = None,
) -> None:
    """Export a trained model: ONNX with dynamic height and width (checked against PyTorch at two sizes, max abs
    difference printed, exit 1 above 1e-4), and/or a shareable .safetensors copy."""
    from autosr.use.export import export as run_export

    run_export(model, onnx_path=onnx, opset=opset, static=static, safetensors_path=safetensors, name=name,
               fp16=fp16, say=typer.echo)


if __name__ == "__main__":
    app()
