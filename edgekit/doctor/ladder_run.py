"""Walking the ladder (see :mod:`edgekit.doctor.ladder`) and writing its choice through ``edgekit.export``."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._chance import check as check_chance
from .._io import sha256_file as sha256, write_text_atomic
from .ladder import MORE_CALIBRATION, Config, Measured, Rung, Search, float_layer_search, rung_from
from .stats import worst_first
from ..compression import Pipeline

#: verification samples of the written artifact (export's check against Keras, recorded in the manifest)
VERIFY_SAMPLES = 1000


def run_ladder(result, search: Search, backend, kmodel, calib, n1: int, *, diagnose_samples: int, train_data,
               qat_epochs: int, io: str, seed: int, preprocess: str, progress) -> dict[str, Measured]:
    """Fill ``result.rungs`` / ``met`` / ``chosen`` / ``best``; returns {rung name: measured candidate}."""
    max_drop = result.max_drop
    measured: dict[str, Measured] = {}

    def add(rung: Rung, m: Measured | None) -> bool:
        if m is not None:
            rung.p50_ms, rung.latency_note = search.latency(m.path)
            measured[rung.name] = m
        result.rungs.append(rung)
        if rung.status == "within":
            result.met, result.chosen = True, rung.name
            return True
        return False

    plain = search.measure(Config(calib_samples=n1))
    first = result.rungs.pop(0)
    if add(first, plain):
        return measured

    # more calibration samples
    n2 = len(calib(n1 * MORE_CALIBRATION))
    calibrations = [plain]
    if n2 <= n1:
        add(Rung("more calibration samples", "skipped", note=f"--calib-data has no more than {n1} samples"), None)
    else:
        progress("doctor: more calibration samples", 0, None)
        m = search.measure(Config(calib_samples=n2))
        calibrations.append(m)
        if add(rung_from("more calibration samples", m, max_drop), m):
            return measured
    best_cal = max(calibrations, key=lambda c: c.accuracy)

    # onnxruntime's other calibration methods
    for method in backend.calibration_methods[1:]:
        progress(f"doctor: {method} calibration", 0, None)
        m = search.measure(replace(best_cal.config, calibration_method=method))
        calibrations.append(m)
        if add(rung_from(f"{method} calibration", m, max_drop), m):
            return measured
    best_cal = max(calibrations, key=lambda c: c.accuracy)
    base = best_cal.config

    # layers kept in float
    progress("doctor: layers kept in float", 0, None)
    x_cal = calib(base.calib_samples)
    stats = result.layers if base == plain.config else \
        worst_first(backend.diagnose(base, x_cal, search.ev.x[:diagnose_samples]))
    found, steps, note = float_layer_search(search, base, stats, backend.graph(base, x_cal), max_drop, progress)
    if found is None:
        add(Rung("layers kept in float", "skipped", note=note), None)
    elif add(rung_from("layers kept in float", found, max_drop, steps=steps, note=note), found):
        return measured

    # int16 activations
    if not backend.int16x8:
        add(Rung("int16x8 activations", "skipped", precision="int16x8",
                 note=f"the {backend.fmt} exporter has no int16x8; --format tflite has it"), None)
    elif io != "float":
        add(Rung("int16x8 activations", "skipped", precision="int16x8",
                 note=f"--io {io} cannot carry int16 activations (int16x8 takes --io float or int16)"), None)
    else:
        progress("doctor: int16x8 activations", 0, None)
        m = search.measure(Config("int16x8", calib_samples=base.calib_samples))
        if add(rung_from("int16x8 activations", m, max_drop), m):
            return measured

    # quantization-aware training
    if train_data is None:
        add(Rung("QAT fine-tuning", "skipped", note="give --train-data to fine-tune with quantization-aware "
                                                    "training"), None)
    elif not backend.qat:
        add(Rung("QAT fine-tuning", "skipped", note=f"the {backend.fmt} exporter takes no QAT models; "
                                                    "--format tflite does"), None)
    else:
        progress("doctor: QAT fine-tuning", 0, None)
        qat_model = _qat(kmodel, train_data, qat_epochs, seed, preprocess, progress)
        m = search.measure(Config(calib_samples=0, qat_epochs=qat_epochs), model=qat_model)
        m.model = qat_model
        if add(rung_from("QAT fine-tuning", m, max_drop), m):
            return measured

    result.met = False
    tried = [r for r in result.rungs if r.measured]
    if tried:
        result.best = max(tried, key=lambda r: r.accuracy).name  # first in ladder order on ties (cheaper)
    return measured


def _qat(kmodel, train_data, epochs: int, seed: int, preprocess: str, progress):
    """A quantization-aware copy of ``kmodel`` fine-tuned on ``train_data`` (edgekit's QAT stage)."""
    from .._keras import keras

    clone = keras.models.clone_model(kmodel)
    clone.set_weights(kmodel.get_weights())
    config = {"seed": seed, "preprocess": preprocess}
    return Pipeline([{"qat": {"epochs": epochs}}]).run(clone, train_data, config, progress=progress).model


def recipe_keys(result, cfg: Config, *, model, model_options: dict, calib_data, eval_data, verify_samples: int,
                train_data, io: str, out, preprocess: str | None, seed: int) -> tuple[dict[str, Any], list[str]]:
    """The recipe keys that reproduce ``cfg`` with ``edgekit export --recipe`` (no search), and notes on what
    they cannot carry."""
    notes = []
    name = model if isinstance(model, (str, os.PathLike)) else None
    if name is None:
        notes.append("the model was given as a Python object: save it (model.save('model.keras')) and put that "
                     "path under `model`")
    keys: dict[str, Any] = {"model": str(name) if name is not None else f"<{result.model}>", **model_options}
    if model_options.get("weights") == "none":
        notes.append("weights: none rebuilds the zoo model with new random weights; point `model` at the trained file")
    if cfg.qat_epochs:
        keys.update({"data": _source(train_data, notes, "train_data"), "qat": True, "qat_epochs": cfg.qat_epochs,
                     "quantize": "int8"})
    else:
        # verify_data: with it, export calibrates on exactly the samples the doctor did (and verifies on eval data)
        keys.update({"quantize": cfg.quantize, "calib_data": _source(calib_data, notes, "calib_data"),
                     "calib_samples": cfg.calib_samples, "verify_data": _source(eval_data, notes, "eval_data"),
                     "verify_samples": verify_samples})
        if cfg.float_layers:
            keys["float_layers"] = list(cfg.float_layers)
        if cfg.calibration_method != "minmax":
            keys["calibration_method"] = cfg.calibration_method
    keys["formats"] = [result.format]
    if io != "float" and cfg.quantize == "int8":
        keys["io"] = io
    if preprocess is not None:
        keys["preprocess"] = preprocess
    keys.update({"seed": seed, "out": str(out)})
    return keys, notes


def _source(data, notes: list[str], key: str) -> str:
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    notes.append(f"{key} was given as a Python object: save it as an .npz (x, y) and put that path under `{key}`")
    return f"<{type(data).__name__}>"


def _chance(result, rung) -> dict | None:
    """The float model's and the chosen artifact's accuracy against the eval labels' chance accuracy."""
    if not result.chance:
        return None
    art = check_chance(rung.accuracy, samples=result.eval_samples, chance=result.chance["chance"])
    return {"float": result.chance, "artifact": art.to_dict()}


def write_choice(result, measured: dict[str, Measured], kmodel, *, search: Search, model, model_options: dict,
                 calib_data, eval_data, train_data, io: str, out, preprocess: str | None, threads, seed: int,
                 opset: int | None, progress) -> None:
    """Export the chosen (or, with keep_best, the best) rung with ``edgekit.export`` and add the doctor's record to
    its manifest: rung, float layers, cost against plain int8, every rung tried, the recipe keys."""
    import yaml

    from ..exporters import export

    name = result.chosen or result.best
    m = measured[name]
    cfg = m.config
    qat_model = getattr(m, "model", None)
    verify_samples = min(result.eval_samples, VERIFY_SAMPLES)
    res = export(qat_model if qat_model is not None else kmodel, quantize=cfg.quantize, formats=result.format,
                 calib_data=None if qat_model is not None else calib_data,
                 calib_samples=None if qat_model is not None else cfg.calib_samples,
                 io=io if cfg.quantize == "int8" else "float", out=out, verify=False, verify_data=eval_data,
                 verify_samples=verify_samples, preprocess=preprocess, threads=threads, seed=seed,
                 float_layers=cfg.float_layers, calibration_method=cfg.calibration_method, opset=opset,
                 progress=progress)
    art = res[result.format]
    rung = next(r for r in result.rungs if r.name == name)
    if art.sha256 != sha256(m.path):  # not byte for byte the candidate (tf2onnx numbers its nodes): measure it
        acc = round(search.accuracy(art.path), 6)
        if acc != rung.accuracy:
            result.notes.append(f"{art.path.name} measured again after writing: {acc:.2%} (the candidate "
                                f"measured {rung.accuracy:.2%})")
            rung.accuracy, rung.drop = acc, round(search.ev.float_accuracy - acc, 6)
    keys, notes = recipe_keys(result, cfg, model=model, model_options=model_options, calib_data=calib_data,
                              eval_data=eval_data, verify_samples=verify_samples, train_data=train_data, io=io,
                              out=out, preprocess=preprocess, seed=seed)
    if opset is not None:
        keys["opset"] = opset
    result.notes.extend(notes)
    result.export, result.recipe = res, keys
    plain = next((r for r in result.rungs if r.name == "plain int8"), None)
    record = {
        "rung": name, "met": result.met, "max_drop": result.max_drop, "metric": result.metric,
        "eval_data": result.eval_source, "eval_samples": result.eval_samples,
        "float_accuracy": result.float_accuracy, "accuracy": rung.accuracy, "drop": rung.drop,
        "chance": _chance(result, rung), "float_layers": list(cfg.float_layers),
        "cost": {"size_bytes": art.size_bytes, "p50_ms": rung.p50_ms, "latency": rung.latency_note,
                 "plain_int8_size_bytes": plain.size_bytes if plain else None,
                 "plain_int8_p50_ms": plain.p50_ms if plain else None,
                 "size_vs_plain_int8": _ratio(art.size_bytes, plain.size_bytes if plain else None),
                 "p50_vs_plain_int8": _ratio(rung.p50_ms, plain.p50_ms if plain else None)},
        "rungs": [r.to_dict() for r in result.rungs],
        "recipe": keys,
    }
    doc = json.loads(art.manifest.read_text())
    if isinstance(model, (str, os.PathLike)):
        doc["model"]["source"] = str(model)
    doc["doctor"] = record
    write_text_atomic(art.manifest, json.dumps(doc, indent=2) + "\n")
    recipe = Path(str(art.path) + ".recipe.yaml")
    header = (f"# written by `edgekit doctor`: {name} ({rung.accuracy:.2%} {result.metric}, drop "
              f"{100 * rung.drop:.2f} points, budget {100 * result.max_drop:g})\n"
              f"# reproduce without searching: edgekit export --recipe {recipe}\n")
    write_text_atomic(recipe, header + yaml.safe_dump({"name": Path(art.path).stem, **keys}, sort_keys=False))


def _ratio(a, b) -> float | None:
    return round(a / b, 4) if a is not None and b else None
