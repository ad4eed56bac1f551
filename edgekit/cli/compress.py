"""``edgekit train`` and ``edgekit compress``: thin wrappers over :func:`edgekit.compression.train` / ``compress``.

Every option is the same-named argument of the Python function and the same key in a recipe (``-`` for ``_``).
"""
from __future__ import annotations

from typing import Any

import click

from ._options import model_options, pop_model_options
from ._output import emit, json_option, out, progress


def _given(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Options the user set (None and empty tuples mean: the API default)."""
    return {k: v for k, v in kwargs.items() if v is not None and v != ()}


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
    out.print(line)
    for label, path in (("checkpoint", report.checkpoint), ("model", report.saved)):
        if path:
            out.print(f"{label}: {path}")


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
    for art in rep.artifacts:
        lat = f"  (p50 {art.latency_ms_p50:.3f} ms, {art.latency_note})" if art.latency_ms_p50 else ""
        out.print(f"artifact: {art.path}{lat}")
    if rep.report_json:
        out.print(f"report: {rep.report_json}" + (f"  plot: {rep.plot_png}" if rep.plot_png else ""))
    if result.model_path:
        out.print(f"model: {result.model_path}")


@click.command("train")
@click.argument("model")
@click.option("--data", required=True, help="Training data: fashion-mnist, digits, an image folder (sub-folder per "
                                            "class) or an .npz with x and y.")
@click.option("--epochs", type=int, default=None, help="Epochs (default 5).")
@click.option("--batch-size", type=int, default=None, help="Batch size (default 64).")
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3, Adam).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]), default=None)
@click.option("--val-fraction", type=float, default=None, help="Held-out validation fraction (default 0.1).")
@click.option("--val-data", default=None, help="Separate validation data instead of --val-fraction.")
@click.option("--limit", type=int, default=None, help="Use a seeded random subset of this many training samples.")
@click.option("--test-limit", type=int, default=None, help="Test samples of a built-in dataset to evaluate on.")
@click.option("--seed", type=int, default=None, help="Seed for splits, shuffling and initialisation (default 0).")
@click.option("--bn-momentum", type=float, default=None, help="BatchNorm momentum set before training (default 0.9).")
@click.option("--preprocess", default=None, help="Input preprocessing for user models: unit, tf, torch, caffe, raw.")
@click.option("--checkpoint-dir", default=None, help="Save the best epoch to DIR/best.keras (atomic).")
@click.option("--out", default=None, help="Save the trained model to PATH.keras.")
@model_options()
@json_option
def train_cmd(model: str, as_json: bool, **kwargs: Any) -> None:
    """Train or fine-tune MODEL (zoo name or model file) on --data; keeps the best epoch by validation accuracy.

    \b
    edgekit train mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --data fashion-mnist --epochs 5 --out artifacts/mobilenet_fmnist.keras
    """
    from ..compression import train

    opts = pop_model_options(kwargs)
    args = _given(kwargs)
    with progress(not as_json) as cb:
        _, report = train(model, progress=cb, **args, **opts)
    emit(report, as_json, render_train)


@click.command("compress")
@click.argument("model")
@click.option("--data", required=True, help="Training data (as for edgekit train).")
@click.option("--train-epochs", type=int, default=None, help="Train the float baseline first for N epochs.")
@click.option("--train-lr", type=float, default=None, help="Learning rate of that training (default 1e-3).")
@click.option("--prune", type=float, default=None, help="Prune to this sparsity (e.g. 0.5).")
@click.option("--prune-schedule", type=click.Choice(["polynomial", "constant"]), default=None)
@click.option("--prune-structure", default=None, help="N:M structured sparsity, e.g. 2:4.")
@click.option("--prune-policy", type=click.Choice(["xnnpack"]), default=None,
              help="Prune for latency on XNNPACK (tfmot PruneForLatencyOnXNNPack).")
@click.option("--prune-epochs", type=int, default=None, help="Fine-tuning epochs while pruning (default 2).")
@click.option("--prune-layers", multiple=True, help="Only layers matching this pattern (repeatable).")
@click.option("--prune-skip", multiple=True, help="Skip layers matching this pattern (default @first, @last).")
@click.option("--cluster", type=int, default=None, help="Cluster weights into N shared values (e.g. 16).")
@click.option("--cluster-init", type=click.Choice(["kmeans++", "linear", "density", "random"]), default=None)
@click.option("--cluster-per-channel", is_flag=True, default=None, help="N clusters per output channel.")
@click.option("--cluster-epochs", type=int, default=None, help="Fine-tuning epochs while clustering (default 1).")
@click.option("--qat", is_flag=True, default=None, help="Quantization-aware training (then --quantize int8).")
@click.option("--qat-epochs", type=int, default=None, help="QAT fine-tuning epochs (default 1).")
@click.option("--distill-from", default=None, help="Teacher: zoo name or trained model file.")
@click.option("--teacher-epochs", type=int, default=None, help="Train a zoo teacher first for N epochs (required "
                                                               "for a zoo teacher without weights).")
@click.option("--temperature", type=float, default=None, help="Distillation temperature (default 4).")
@click.option("--distill-alpha", type=float, default=None, help="Weight of the label loss (default 0.1).")
@click.option("--distill-epochs", type=int, default=None, help="Student epochs with the teacher (default 3).")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs of every compression stage.")
@click.option("--lr", type=float, default=None, help="Fine-tuning learning rate of every compression stage.")
@click.option("--batch-size", type=int, default=None)
@click.option("--limit", type=int, default=None, help="Seeded random subset of the training data.")
@click.option("--test-limit", type=int, default=None, help="Test samples of a built-in dataset.")
@click.option("--val-fraction", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--bn-momentum", type=float, default=None)
@click.option("--preprocess", default=None)
@click.option("--quantize", type=click.Choice(["none", "fp16", "dynamic", "int8", "int16x8"]), default=None,
              help="Export the result at this precision (post-training; int8 calibrated on the training data).")
@click.option("--format", "formats", default=None, help="Export formats, comma-separated (default tflite).")
@click.option("--calib-samples", type=int, default=None, help="Calibration samples (default 500).")
@click.option("--calib-data", default=None, help="Calibrate on this source instead of the training data.")
@click.option("--verify-data", default=None, help="Verify on this source (default: the test/held-out split).")
@click.option("--verify-samples", type=int, default=None)
@click.option("--opset", type=int, default=None, help="ONNX opset (with --format onnx).")
@click.option("--threads", type=int, default=None, help="Interpreter threads for verification.")
@click.option("--io", type=click.Choice(["float", "int8", "uint8"]), default=None)
@click.option("--per-tensor", is_flag=True, default=None)
@click.option("--out", default=None, help="Output folder for artifacts and the report (default artifacts).")
@click.option("--verify/--no-verify", default=None)
@click.option("--latency", is_flag=True, default=None, help="Measure local latency of the artifact (edgekit bench).")
@click.option("--save-model", default=None, help="Also save the compressed Keras model to PATH.keras.")
@model_options()
@json_option
def compress_cmd(model: str, as_json: bool, **kwargs: Any) -> None:
    """Compress MODEL (train, distill, prune, cluster, QAT) on --data, then export with --quantize.

    \b
    edgekit compress mobilenet_v1 --alpha 0.25 --resolution 32 --input-channels 1 --classes 10 --weights none \\
        --data fashion-mnist --train-epochs 3 --prune 0.5 --quantize int8 --out artifacts/pruned
    """
    from ..compression import compress

    opts = pop_model_options(kwargs)
    args = _given(kwargs)
    for key in ("prune_layers", "prune_skip"):
        if key in args:
            args[key] = list(args[key])
    with progress(not as_json) as cb:
        result = compress(model, progress=cb, **args, **opts)
    emit(result, as_json, render_compress)


def register(main: click.Group) -> None:
    main.add_command(train_cmd)
    main.add_command(compress_cmd)
