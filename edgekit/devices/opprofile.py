"""Where the time goes: per-op times from the device joined with edgekit's per-layer mult-adds.

An op is joined to the Keras layer whose name is a component of the op's name (tf2onnx and the TFLite converter
keep the layer names: ``model/conv_dw_1/depthwise``). Flags: an op whose share of the time is at least
``SLOW_FACTOR`` x its share of the mult-adds (and >= ``MIN_SHARE`` of the time), a float op left in an
int8 model, an op not taken by the XNNPACK delegate when XNNPACK runs the rest.
"""
from __future__ import annotations

import re
from typing import Any, Sequence
from ..models import is_model_file
from ..profiling import profile

SLOW_FACTOR = 2.0
MIN_SHARE = 0.03
#: kernels that compute in float (a QDQ/int8 model should have none of these on its hot path)
_FLOAT_KERNELS = {"Conv", "MatMul", "Gemm", "ConvTranspose", "FusedConv", "FusedMatMul", "FusedGemm"}
_BUILTIN = re.compile(r"^[A-Z0-9_]+$")  # a TFLite builtin kernel (CONV_2D, QUANTIZE, ...), i.e. not delegated


def _delegated(o: dict) -> bool:
    op, name = str(o.get("op")), str(o.get("name"))
    return ("Delegate" in op and op.startswith("TfLite")) or name.startswith("Delegate/")


def layer_mult_adds(model_info: dict | None) -> tuple[dict[str, int] | None, str | None]:
    """{layer name: mult-adds} of the manifest's model, or (None, why).

    Export records them (``model.layer_mult_adds``); older manifests are re-profiled from ``model.source`` (a zoo
    name + options, or a model file, which a relative path finds only from the directory export ran in)."""
    if not model_info:
        return None, "no manifest: mult-adds unknown"
    recorded = model_info.get("layer_mult_adds")
    if isinstance(recorded, dict):
        return {str(k): int(v) for k, v in recorded.items()}, None
    source, opts = model_info.get("source"), dict(model_info.get("options") or {})
    if model_info.get("layer_mult_adds_error") and (not source or source == "keras.Model object"):
        return None, f"export could not count the model's mult-adds: {model_info['layer_mult_adds_error']}"
    if not source or source == "keras.Model object":
        return None, "the manifest does not say where the model came from: mult-adds unknown"
    import os

    note = None
    if is_model_file(source):
        if not os.path.exists(source):
            where = "" if os.path.isabs(source) else ", relative to the directory export ran in"
            return None, (f"the manifest records no per-layer mult-adds and its model file {source}{where} is not "
                          "here: mult-adds unknown (re-export the artifact to record them in its manifest)")
        note = (f"mult-adds from {os.path.abspath(source)} (the manifest predates recorded mult-adds; re-export "
                "the artifact to record them)")
    opts.pop("weights", None)  # mult-adds do not depend on the weights
    try:
        rep = profile(source, **opts)
    except Exception as exc:  # noqa: BLE001 - a join is optional; say why it is missing
        return None, f"could not profile {source}: {type(exc).__name__}: {exc}"
    return {layer.name: int(layer.mult_adds) for layer in rep.layers}, note


def _layer_of(op_name: str, layers: Sequence[str]) -> str | None:
    parts = set(re.split(r"[/;:]", op_name))
    hits = [name for name in layers if name in parts]
    return max(hits, key=len) if hits else None


def join(profile: dict[str, Any], layers: dict[str, int] | None, *, precision: str | None = None,
         delegate: str | None = None, top: int = 15) -> dict[str, Any]:
    """The slowest ops with share of time, mult-adds of their layer, ms per million mult-adds and flags."""
    ops = [dict(o) for o in profile.get("ops") or []]
    total_ms = sum(o["avg_ms"] for o in ops) or 1.0
    per_layer_ops: dict[str, int] = {}
    for o in ops:
        o["share"] = o["avg_ms"] / total_ms
        o["layer"] = _layer_of(o["name"], list(layers)) if layers else None
        if o["layer"]:
            per_layer_ops[o["layer"]] = per_layer_ops.get(o["layer"], 0) + 1
    total_ma = sum(layers.values()) if layers else 0
    delegated = any(_delegated(o) for o in ops)
    for o in ops:
        flags = []
        ma = layers.get(o["layer"]) if layers and o["layer"] else None
        o["mult_adds"] = ma  # of the layer (a conv's bias/activation ops share their conv layer's count)
        o["ms_per_mmac"] = (o["avg_ms"] / (ma / 1e6)) if ma else None
        if ma and total_ma and o["share"] >= MIN_SHARE and o["share"] >= SLOW_FACTOR * (ma / total_ma):
            flags.append(f"slow for its cost ({o['share']:.0%} of the time, {ma / total_ma:.0%} of the mult-adds)")
        if not ma and layers is not None and o["share"] >= MIN_SHARE:
            flags.append(f"{o['share']:.0%} of the time in an op without mult-adds")
        if precision == "int8" and o.get("op") in _FLOAT_KERNELS:
            flags.append("float kernel in an int8 model")
        if delegated and delegate in (None, "auto", "xnnpack") and _BUILTIN.match(str(o.get("op"))):
            flags.append("not taken by XNNPACK")
        o["flags"] = flags
    ops.sort(key=lambda o: -o["avg_ms"])
    return {"available": True, "runtime": profile.get("runtime"), "source": profile.get("source"),
            "total_op_ms": total_ms, "ops": ops[:top], "op_count": len(ops),
            "flagged": sum(1 for o in ops if o["flags"])}


def attach(rows: Sequence[Any], infos: Sequence[Any]) -> None:
    """Replace each row's raw op profile by the joined table (layers profiled once per artifact)."""
    cache: dict[str, tuple[dict[str, int] | None, str | None]] = {}
    by_path = {i.path: i for i in infos}
    for r in rows:
        prof = r.op_profile
        if not prof:
            continue
        if not prof.get("available"):
            continue
        info = by_path.get(r.artifact)
        if r.artifact not in cache:
            cache[r.artifact] = layer_mult_adds(getattr(info, "model_info", None))
        layers, why = cache[r.artifact]
        r.op_profile = join(prof, layers, precision=r.precision, delegate=r.delegate)
        if why:
            r.op_profile["note"] = why
