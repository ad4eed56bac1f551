"""A model file never runs code: its stored configuration is read as JSON and checked before Keras builds anything.

Refused unless the caller trusts the file (``trust_model_code=True``, ``--trust-model-code``):

- ``Lambda`` layers: tf-keras stores the function's marshalled bytecode (or its name and module), Keras 3 a
  ``__lambda__`` object; either runs when the layer is built or called;
- any serialized Python lambda (``__lambda__``, ``function_type: lambda``), e.g. in an activation;
- layers that unpickle Python objects (Keras 3's ``TorchModuleWrapper``);
- objects whose ``module`` is not a Keras/TensorFlow module: deserialising them imports that module (runs its
  top-level code);
- tf-keras ``TFOpLambda`` layers that call a TensorFlow function with side effects (file I/O, printing,
  ``py_function``, ``load_library``, ...): plain math (``tf.math.add``, ``x + 1``) is allowed.

Nothing here imports TensorFlow: the caller reads the config (``.h5`` ``model_config``, the ``.keras`` zip's
``config.json``, a SavedModel's ``keras_metadata.pb``) and hands it over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ..errors import ModelLoadError

#: layer classes that deserialise Python code or objects, and what they do
CODE_LAYERS = {
    "Lambda": "runs Python code stored in the file",
    "TorchModuleWrapper": "unpickles a Python object stored in the file",
}
#: top-level packages a stored ``module`` may name (edgekit's own dependencies, already imported to load a model)
SAFE_MODULES = ("keras", "tf_keras", "tensorflow", "tensorflow_model_optimization", "builtins", "numpy")
#: first component of a TFOpLambda function (relative to ``tf.``) that has side effects beyond computing a tensor
SIDE_EFFECT_TF = ("io", "debugging", "print", "summary", "py_function", "numpy_function", "data", "saved_model",
                  "train", "config", "experimental", "distribute", "lite", "autograph", "profiler", "sysconfig",
                  "load_library", "load_op_library", "raw_ops", "compat", "tpu", "queue", "estimator",
                  "feature_column", "keras", "Module", "Variable", "function")
TRUST_HINT = ("load it only if you trust where the file came from: --trust-model-code "
              "(Python: trust_model_code=True)")


@dataclass(frozen=True)
class Finding:
    """One reason a stored model would run code: the layer (or object) it is in and why."""

    layer: str
    kind: str
    why: str

    def text(self) -> str:
        return f"{self.kind} layer {self.layer!r} ({self.why})" if self.layer else f"{self.kind} ({self.why})"


def find_code(config: Any) -> list[Finding]:
    """Every place in a stored model config (parsed JSON) that would run Python code when deserialised."""
    found: list[Finding] = []
    seen: set[str] = set()
    for f in _walk(config, ""):   # one finding per layer (the outermost reason: a Lambda, not also its lambda)
        key = f.layer or f"{f.kind}: {f.why}"
        if key not in seen:
            seen.add(key)
            found.append(f)
    return found


def _layer_name(node: dict, default: str) -> str:
    cfg = node.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    return str(name if name is not None else node.get("name", default))


def _walk(node: Any, layer: str) -> Iterator[Finding]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, layer)
        return
    if not isinstance(node, dict):
        return
    class_name = node.get("class_name")
    if isinstance(class_name, str):
        inner = _layer_name(node, layer) if isinstance(node.get("config"), dict) else layer
        names = {class_name, str(node.get("registered_name") or "")}
        for cls in names & set(CODE_LAYERS):
            yield Finding(inner, cls, CODE_LAYERS[cls])
        if class_name == "__lambda__":
            yield Finding(layer, "a Python lambda", "its bytecode is stored in the file and runs when loaded")
        module = node.get("module")
        if isinstance(module, str) and module and module.split(".")[0] not in SAFE_MODULES:
            yield Finding(inner, class_name, f"loading it imports Python module {module!r}, which runs its code")
        if class_name in ("TFOpLambda", "SlicingOpLambda"):
            cfg = node.get("config") if isinstance(node.get("config"), dict) else {}
            fn = str(cfg.get("function", ""))
            if fn.split(".")[0] in SIDE_EFFECT_TF:
                yield Finding(inner, class_name, f"it calls tf.{fn}, a TensorFlow operation with side effects")
        layer = inner
    for key in ("function_type", "output_shape_type"):
        if node.get(key) == "lambda":
            yield Finding(layer, "a Python lambda", "its bytecode is stored in the file and runs when loaded")
    for key, value in node.items():
        if key == "compile_config":  # loss/metric objects: only read when compiling, and edgekit never compiles
            continue
        yield from _walk(value, layer)


def check_no_code(configs: Iterable[Any], where: str) -> None:
    """Raise UntrustedModelCode naming the layers of ``configs`` (stored configs of ``where``) that run code."""
    found: list[Finding] = []
    for cfg in configs:
        found.extend(f for f in find_code(cfg) if f not in found)
    if not found:
        return
    shown = "; ".join(f.text() for f in found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
    raise UntrustedModelCode(f"model file {where!r} would run code when loaded: {shown}", hint=TRUST_HINT,
                             findings=found)


class UntrustedModelCode(ModelLoadError):
    """A model file holds layers that run Python code when loaded, and the caller did not trust it."""

    def __init__(self, message: str, *, hint: str | None = None, findings: list[Finding] | None = None):
        super().__init__(message, hint=hint)
        self.findings = list(findings or [])
