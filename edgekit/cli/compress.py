"""``edgekit train`` and ``edgekit compress``: thin wrappers over :func:`edgekit.compression.train` / ``compress``.

Every option is the same-named argument of the Python function and the same key in a recipe (``-`` for ``_``).
"""
from __future__ import annotations

from typing import Any

import click

from ..specs import CompressSpec, TrainSpec
from ._options import given, spec_command, spec_options
from ._output import emit, json_option, out, progress


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def render_train(report) -> None:
    from rich.table import Table

    table = Table(title=f"train {report.model} on {report.data} ({report.train_samples} train / "
                        f"{report.val_samples} val)", title_justify="left")
    for col in ("epoch", "loss", "acc", "val loss", "val acc", "s"):
        table.add_column(col, justify="right")
    for e in report.history:
        best = " *" if e.epoch == report.best_epoch else ""
        table.add_row(f"{e.epoch}{best}", f"{e.loss:.4f}", _pct(e.accuracy),
                      "-" if e.val_loss is None else f"{e.val_loss:.4f}", _pct(e.val_accuracy), f"{e.seconds:.1f}")
    out.print(table)
    line = f"best epoch {report.best_epoch} (val acc {_pct(report.best_val_accuracy)})"
    if report.test_accuracy is not None:
        line += f"; test acc {_pct(report.test_accuracy)} on {report.test_samples} samples"
        if report.chance:
            line += (f" (chance {_pct(report.chance['chance'])}: "
                     f"{'above' if report.chance['above_chance'] else 'NOT above'})")
    out.print(line)
    _print_training(report.strategy or {}, report.resumed_from_epoch)
    for label, path in (("checkpoint", report.checkpoint), ("model", report.saved)):
        if path:
            out.print(f"{label}: {path}")


def _print_training(strategy: dict, resumed_from: int = 0) -> None:
    """One line about the distribution when it is not the plain one-device run (or when it resumed)."""
    if strategy.get("strategy") in (None, "one-device") and not resumed_from:
        return
    worker = "" if strategy.get("chief", True) else f"; worker {strategy.get('worker')} (the chief writes the files)"
    resumed = f"; resumed after epoch {resumed_from}" if resumed_from else ""
    out.print(f"strategy {strategy.get('strategy')}: {strategy.get('replicas', 1)} replica(s) on "
              f"{strategy.get('workers', 1)} worker(s){worker}{resumed}")


def render_compress(result) -> None:
    """The Deep Compression table of a CompressResult / RecipeResult, then the files written."""
    from rich.table import Table

    from ..compression.report import COLUMNS

    rep = result.report
    table = Table(title=f"{rep.model}: {' -> '.join(['input', *result.stages])} on {rep.data} "
                        f"({rep.train_samples} train / {rep.val_samples} val / {rep.test_samples} test)",
                  title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "stage" else "right")
    for row in rep.rows():
        table.add_row(*row)
    out.print(table)
    out.print("sizes: kernels as int8 (stage rows simulate the converter's per-channel int8; artifact rows read the "
              ".tflite); sparsity over all conv/dense/depthwise kernels, 'pruned sp.' over the pruned ones")
    for st in rep.stages:
        for note in st.notes:
            out.print(f"{st.stage}: {note}")
    _print_training(getattr(rep, "training", None) or {})
    for art in rep.artifacts:
        lat = f"  (p50 {art.p50_ms:.3f} ms, {art.latency_note})" if art.p50_ms else ""
        out.print(f"artifact: {art.path}{lat}")
    if rep.report_json:
        out.print(f"report: {rep.report_json}" + (f"  plot: {rep.plot_png}" if rep.plot_png else ""))
    if result.model_path:
        out.print(f"model: {result.model_path}")


@spec_command(TrainSpec, "edgekit.compression:train", cli_only=("as_json",), api_only=("callbacks",))
@click.command("train")
@spec_options(TrainSpec)
@json_option
def train_cmd(as_json: bool, **kwargs: Any) -> None:
    """Train or fine-tune MODEL (zoo name or model file) on --data; keeps the best epoch by validation accuracy.

    \b
    edgekit train mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --data fashion-mnist --epochs 5 --out artifacts/mobilenet_fmnist.keras

    The test accuracy is tested against chance (the largest class share of the test labels; one-sided binomial
    test, alpha 0.01): the report says whether it is above, and a warning says what to change when it is not.

    Short runs: after every epoch the BatchNorm statistics are recomputed on --precise-bn training samples with the
    epoch's final weights (the running averages lag behind the weights). Measured on the example above with
    --epochs 1 --limit 2000 (28 steps of Adam at the default --lr): test accuracy 10.00 % (chance) with
    --precise-bn 0, 18.83 % with the default. A MobileNet trained from scratch still learns slowly in its first
    few dozen Adam steps: give it more steps (--epochs, --limit) or --optimizer sgd --lr 0.1 (46.67 % after the
    same 28 steps).
    """
    from ..compression import train

    spec = TrainSpec.from_dict(given(kwargs))
    with progress(not as_json) as cb:
        report = train(spec=spec, progress=cb).report
    emit(report, as_json, render_train)


@spec_command(CompressSpec, "edgekit.compression:compress", cli_only=("as_json",),
              api_only=("callbacks", "provenance"))
@click.command("compress")
@spec_options(CompressSpec)
@json_option
def compress_cmd(as_json: bool, **kwargs: Any) -> None:
    """Compress MODEL (train, distill, prune, cluster, QAT) on --data, then export with --quantize.

    \b
    edgekit compress mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --data fashion-mnist --train-epochs 3 --prune 0.5 --quantize int8 --out artifacts/pruned
    """
    from ..compression import compress

    spec = CompressSpec.from_dict(given(kwargs))
    with progress(not as_json) as cb:
        result = compress(spec=spec, progress=cb)
    emit(result, as_json, render_compress)


def register(main: click.Group) -> None:
    main.add_command(train_cmd)
    main.add_command(compress_cmd)
