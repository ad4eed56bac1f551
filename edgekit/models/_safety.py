"""A model file never runs code: its stored configuration is read as JSON and checked before Keras builds anything.

Refused unless the caller trusts the file (``trust_model_code=True``, ``--trust-model-code``):

- ``Lambda`` layers: tf-keras stores the function's marshalled bytecode (or its name and module), Keras 3 a
  ``__lambda__`` object; either runs when the layer is built or called;
- any serialized Python lambda (``__lambda__``, ``function_type: lambda``), e.g. in an activation;
- layers that unpickle Python objects (Keras 3's ``TorchModuleWrapper``) or load a SavedModel from a path
  (``TFSMLayer``); lookup layers (``StringLookup``, ``IntegerLookup``, ``TextVectorization``) whose vocabulary is
  a file path (read when the layer is built: any file edgekit can read would end up in the model);
- objects whose ``module`` is not on the allowlist (Keras, tf-keras, tfmot, edgekit): deserialising them imports
  that module and calls what it names; stored functions other than Keras activations/losses/metrics; TensorFlow
  type specs other than the tensor specs;
- tf-keras op layers (``TFOpLambda``, ``SlicingOpLambda``, ``ClassMethod``, ``InstanceMethod``,
  ``InstanceProperty``) unless what they call is on an allowlist of pure tensor ops (``tf.math.*``, ``tf.nn.*``,
  reshape/concat/transpose/..., operators such as ``x + 1``, the ragged/sparse methods tf-keras records): anything
  else (file I/O, printing, ``py_function``, ``load_library``, ``tf.test.main``, ...) may have side effects, and a
  blocklist could never be complete.

Nothing here imports TensorFlow: the caller reads the config (``.h5`` ``model_config``, the ``.keras`` zip's
``config.json``, a SavedModel's ``keras_metadata.pb``) and hands it over.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ..errors import ModelLoadError

#: layer classes that deserialise Python code or objects, and what they do
CODE_LAYERS = {
    "Lambda": "runs Python code stored in the file",
    "TorchModuleWrapper": "unpickles a Python object stored in the file",
    "TFSMLayer": "loads and runs the SavedModel at a path named in the file",
}
#: preprocessing layers whose ``vocabulary`` may name a file that is read when the layer is built
LOOKUP_LAYERS = ("StringLookup", "IntegerLookup", "TextVectorization")
#: top-level packages a stored ``module`` may name (edgekit's own dependencies, already imported to load a model)
SAFE_MODULES = ("keras", "tf_keras", "tensorflow_model_optimization", "edgekit")
#: TensorFlow type specs a stored ``__typespec__`` may name (its ``module`` is a ``tensorflow.*`` module)
SAFE_TYPESPECS = ("TensorSpec", "RaggedTensorSpec", "SparseTensorSpec", "BoundedTensorSpec")
#: Keras modules whose functions a stored ``{"class_name": "function"}`` may name (activations, losses, metrics)
SAFE_FUNCTION_MODULES = ("activations", "losses", "metrics")
#: tf-keras layers that call a TensorFlow symbol named in the file (``tf_keras/src/layers/core/tf_op_layer.py``):
#: each is allowed only with a pure tensor op from the allowlists below
OP_LAYERS = ("TFOpLambda", "SlicingOpLambda", "ClassMethod", "InstanceMethod", "InstanceProperty")
#: TFOpLambda functions (names relative to ``tf.``) in namespaces of pure tensor math; see :func:`pure_tf_function`
PURE_TF_NAMESPACES = ("math.", "math.special.", "nn.", "linalg.", "signal.", "bitwise.", "image.", "__operators__.",
                      "dtypes.")
#: in those namespaces, names that are not plain tensor math (image codecs parse bytes; callables, global state)
NOT_PURE_IN_NAMESPACES = re.compile(r"(^|\.)(experimental|decode_\w*|encode_\w*|extract_jpeg_shape|is_jpeg|"
                                    r"adjust_jpeg_quality|random_jpeg_quality|stateless_random_jpeg_quality)(\.|$)")
#: top-level TFOpLambda functions (``tf.NAME``) that compute tensors from tensors and nothing else
PURE_TF_TOP = frozenset("""
abs acos acosh add add_n argmax argmin argsort asin asinh atan atan2 atanh batch_to_space bitcast boolean_mask
broadcast_dynamic_shape broadcast_static_shape broadcast_to cast clip_by_global_norm clip_by_norm clip_by_value
complex concat constant convert_to_tensor cos cosh cumsum divide dynamic_partition dynamic_stitch einsum
ensure_shape equal exp expand_dims extract_volume_patches eye fill floor gather gather_nd greater greater_equal
histogram_fixed_width histogram_fixed_width_bins identity identity_n less less_equal linspace logical_and
logical_not logical_or matmul maximum meshgrid minimum multiply negative norm not_equal one_hot ones ones_like pad
parallel_stack pow range rank realdiv reduce_all reduce_any reduce_logsumexp reduce_max reduce_mean reduce_min
reduce_prod reduce_sum repeat reshape reverse reverse_sequence roll round saturate_cast scalar_mul scatter_nd
searchsorted sequence_mask shape shape_n sigmoid sign sin sinh size slice sort space_to_batch space_to_batch_nd
split sqrt square squeeze stack stop_gradient strided_slice subtract tan tanh tensor_scatter_nd_add
tensor_scatter_nd_max tensor_scatter_nd_min tensor_scatter_nd_sub tensor_scatter_nd_update tensordot tile
transpose truediv truncatediv truncatemod unique unique_with_counts unravel_index unstack where zeros zeros_like
""".split())
#: ``ClassMethod``: the class methods tf-keras itself records (``tf.RaggedTensor.from_*``)
PURE_CLASS_METHODS = {"RaggedTensor": frozenset("""from_value_rowids from_row_splits from_row_lengths from_row_starts
from_row_limits from_uniform_row_length from_nested_value_rowids from_nested_row_splits from_nested_row_lengths
from_tensor from_sparse""".split())}
#: ``InstanceProperty``/``InstanceMethod``: the ragged/sparse tensor attributes tf-keras itself records
PURE_INSTANCE_ATTRS = frozenset("""values flat_values row_splits nested_row_splits value_rowids nested_value_rowids
nrows row_starts row_limits row_lengths nested_row_lengths bounding_shape with_values with_flat_values
with_row_splits_dtype merge_dims to_tensor to_sparse indices dense_shape""".split())


def pure_tf_function(name: str) -> bool:
    """True when ``tf.<name>`` (a TFOpLambda's stored function) is on the allowlist of pure tensor ops."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
        return False
    if "." not in name:
        return name in PURE_TF_TOP
    ns, _, last = name.rpartition(".")
    if not any(name.startswith(p) and name[len(p):].count(".") == 0 for p in PURE_TF_NAMESPACES):
        return False
    return not last[:1].isupper() and not last.startswith("_") and not NOT_PURE_IN_NAMESPACES.search(name)


def _module_finding(class_name: str, node: dict) -> str | None:
    """Why the ``module`` (and, for a function, the name) a stored object names is not on the allowlist, or None."""
    module = node.get("module")
    if module is None or module == "":
        if class_name == "function":
            return _function_finding(node, "")
        return None
    if not isinstance(module, str):
        return f"its stored module {module!r} is not a module name"
    top = module.split(".")[0]
    if class_name == "function":
        return _function_finding(node, module)
    if class_name == "__typespec__":
        spec = node.get("spec_name")
        if top == "tensorflow" and spec in SAFE_TYPESPECS:
            return None
        return f"it names type spec {module}.{spec}, which is not on the allowlist of TensorFlow type specs"
    if top not in SAFE_MODULES:
        return f"loading it imports Python module {module!r}, which runs its code"
    return None


def _function_finding(node: dict, module: str) -> str | None:
    name = node.get("config")
    ok_name = isinstance(name, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) is not None
    parts = module.split(".")
    if ok_name and (module in ("", "builtins") or (parts[0] in ("keras", "tf_keras")
                                                   and set(parts[1:]) & set(SAFE_FUNCTION_MODULES))):
        return None
    return (f"it names the function {module + '.' if module else ''}{name}, which is not a Keras activation, loss "
            "or metric")


def _op_layer_finding(cls: str, cfg: dict) -> str | None:
    """Why a tf-keras op layer (one of OP_LAYERS) with stored config ``cfg`` would run more than pure math, or None."""
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = cfg.get("function")
        return None if pure_tf_function(fn) else f"it calls tf.{fn}, which is not on the allowlist of pure tensor ops"
    if cls == "ClassMethod":
        sym, method = cfg.get("cls_symbol"), cfg.get("method_name")
        if isinstance(method, str) and method in PURE_CLASS_METHODS.get(sym if isinstance(sym, str) else "", ()):
            return None
        return f"it calls tf.{sym}.{method}, which is not on the allowlist of pure tensor ops"
    attr = cfg.get("attr_name")
    return None if isinstance(attr, str) and attr in PURE_INSTANCE_ATTRS else \
        f"it calls the tensor attribute {attr!r}, which is not on the allowlist of ragged/sparse tensor attributes"


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
        why = _module_finding(class_name, node)
        if why:
            yield Finding(inner, class_name, why)
        cfg = node.get("config") if isinstance(node.get("config"), dict) else {}
        if names & set(LOOKUP_LAYERS) and isinstance(cfg.get("vocabulary"), str):
            yield Finding(inner, class_name, f"it reads the file {cfg['vocabulary'][:200]!r} named as its vocabulary")
        for cls in sorted(names & set(OP_LAYERS)):
            why = _op_layer_finding(cls, node.get("config") if isinstance(node.get("config"), dict) else {})
            if why:
                yield Finding(inner, cls, why)
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
