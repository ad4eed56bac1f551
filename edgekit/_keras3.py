"""The only module that imports Keras 3 (``keras>=3``, installed with TensorFlow), to accept users' Keras 3 files.

edgekit itself builds and trains with tf-keras (:mod:`edgekit._keras`; tensorflow-model-optimization needs it).
A Keras 3 model is used as it is where that is exact (profile, export: :func:`export_saved_model` is Keras 3's own
export path to the converters, verification runs the Keras 3 model) and translated layer by layer into an
equivalent tf-keras model with the same weights for the training and compression stages (:func:`to_tf_keras`,
checked numerically before it is returned). Keras 3 is imported on first use only.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidArgument, MissingDependency, ModelLoadError

#: largest |tf-keras - Keras 3| allowed after translation, relative to max(1, max |Keras 3 output|)
TRANSLATION_TOLERANCE = 1e-5


def is_model(obj: Any) -> bool:
    """True for a Keras 3 model object (never imports Keras 3: an object of it exists only once it is imported)."""
    k = sys.modules.get("keras")
    if k is None or not str(getattr(k, "__version__", "0")).split(".")[0].isdigit():
        return False
    if int(str(k.__version__).split(".")[0]) < 3:
        return False
    return isinstance(obj, k.Model)


def _keras():
    from ._keras import quiet_native_logs  # TensorFlow first, quietly (Keras 3 uses it as its backend)

    try:
        with quiet_native_logs():
            import keras
    except ImportError as exc:  # pragma: no cover - installed with TensorFlow >= 2.16
        raise MissingDependency("keras>=3", purpose="to read Keras 3 model files") from exc
    if int(keras.__version__.split(".")[0]) < 3:  # pragma: no cover
        raise MissingDependency("keras>=3", purpose=f"to read Keras 3 model files (found keras {keras.__version__})")
    return keras


def load(path: str, *, safe_mode: bool = True) -> Any:
    """``keras.saving.load_model(path, compile=False, safe_mode=...)``; failures raise ModelLoadError."""
    keras = _keras()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file; translated here
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelLoadError(f"cannot load Keras 3 model {path!r}: {detail}",
                             hint="is it a model saved with Keras 3's model.save()?") from exc


def input_names(model: Any) -> list[str]:
    """The names of the model's Input layers, in input order."""
    return [t._keras_history[0].name for t in model.inputs]


def export_saved_model(model: Any, path: str, batch: int | None = None) -> str:
    """Write ``model`` as a TF SavedModel with Keras 3's ExportArchive; returns ``path``.

    The ``serving_default`` signature takes the inputs by their Input layer names (``batch`` samples; None: free) and
    returns the outputs keyed by the model's output names, like tf-keras' own conversion path.
    """
    keras = _keras()
    from ._keras import quiet_native_logs, tf

    specs = [tf.TensorSpec((batch, *t.shape[1:]), t.dtype, name=n) for t, n in zip(model.inputs, input_names(model))]
    names = list(model.output_names)

    def serve(*xs):
        ys = model(list(xs) if len(xs) > 1 else xs[0], training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return dict(zip(names, ys))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=specs)
    with quiet_native_logs():
        archive.write_out(path, verbose=False)
    return path


# -- translation to tf-keras -------------------------------------------------------------------------------------
#: Keras 3 layer classes translated to the tf-keras class of the same name
SUPPORTED_LAYERS = frozenset("""
    InputLayer Conv1D Conv2D Conv3D Conv1DTranspose Conv2DTranspose Conv3DTranspose DepthwiseConv1D DepthwiseConv2D
    SeparableConv1D SeparableConv2D Dense BatchNormalization LayerNormalization Activation ReLU LeakyReLU PReLU ELU
    Softmax MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D AveragePooling3D
    GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D GlobalMaxPooling1D GlobalMaxPooling2D
    GlobalMaxPooling3D Add Subtract Multiply Average Maximum Minimum Concatenate Reshape Flatten Permute
    RepeatVector Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise GaussianDropout
    AlphaDropout Rescaling ZeroPadding1D ZeroPadding2D ZeroPadding3D Cropping1D Cropping2D Cropping3D UpSampling1D
    UpSampling2D UpSampling3D Identity
""".split())
#: activations with the same name and meaning in both (Keras 3 name -> tf-keras name)
_SAME_ACTIVATIONS = {n: n for n in ("linear", "relu", "sigmoid", "softmax", "tanh", "elu", "selu", "softplus",
                                    "softsign", "exponential", "gelu", "mish")} | {"silu": "swish", "swish": "swish"}
#: activations built from tf-keras layers (Keras 3's hard_sigmoid is relu6(x + 3) / 6, not tf-keras' 0.2x + 0.5)
_COMPOSITE_ACTIVATIONS = ("relu6", "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu")
#: values of Keras 3-only options that mean "off" (dropped when the tf-keras layer has no such option)
_NEUTRAL = (None, False, 0, (), [], {})


def _unsupported(model_name: str, layer: Any, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"cannot translate Keras 3 model {model_name!r} to tf-keras for training: layer {layer.name!r} "
        f"({type(layer).__name__}) {why}",
        hint="the compression stages need tf-keras (tfmot has no Keras 3 support): use standard layers "
             f"({', '.join(sorted(['Conv2D', 'DepthwiseConv2D', 'Dense', 'BatchNormalization', 'Add']))}, ...), "
             "or profile/export the Keras 3 model directly")


def _graph(model: Any) -> Any:
    """The functional graph of a Keras 3 Functional or Sequential model, or None (subclassed)."""
    graph = getattr(model, "_functional", None) or model
    return graph if getattr(graph, "_nodes_by_depth", None) else None


def to_tf_keras(model: Any, *, check: bool = True, seed: int = 0) -> Any:
    """An equivalent tf-keras model with the same weights; with ``check`` every translated layer is run on the
    Keras 3 layer's own input values (random model inputs) and compared with its outputs (max abs error <=
    TRANSLATION_TOLERANCE x max(1, max |output|)), else ModelLoadError naming the layer.

    Standard layers only (:data:`SUPPORTED_LAYERS`; nested Functional/Sequential models are inlined); anything
    else raises InvalidArgument naming the layer.
    """
    keras = _keras()
    from ._keras import keras as tfk

    graph = _graph(model)
    if graph is None:
        raise InvalidArgument(f"cannot translate Keras 3 model {model.name!r} to tf-keras: it is a subclassed model "
                              "(no layer graph)", hint="build it with the functional API or Sequential")
    tr = _Translator(keras, tfk, model.name)
    inputs = []
    for t, name in zip(graph.inputs, input_names(graph)):
        if any(d is None for d in t.shape[1:]) and check:
            raise InvalidArgument(f"Keras 3 model {model.name!r} has free input dimensions {tuple(t.shape)}",
                                  hint="fix them with --input-shape (Python: input_shape=...)")
        x = tfk.Input(batch_shape=tuple(t.shape), dtype=str(t.dtype), name=name)
        tr.tensors[id(t)] = x
        inputs.append(x)
    tr.run(graph)
    outputs = [tr.tensors[id(t)] for t in graph.outputs]
    out = tfk.Model(inputs if len(inputs) > 1 else inputs[0], outputs if len(outputs) > 1 else outputs[0],
                    name=model.name)
    for src, dst in tr.pairs:
        weights = src.get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in dst.weights]:
            raise _unsupported(model.name, src, f"has weights {[w.shape for w in weights]} that do not fit tf-keras' "
                                                f"{[tuple(w.shape) for w in dst.weights]}")
        dst.set_weights(weights)
    if check:
        _check_same(model, tr, seed)
    return out


@dataclass
class _Checked:
    """One translated call: the Keras 3 layer's name, its arguments and outputs (Keras 3 tensors), the tf-keras
    callable doing the same on the arguments, and the (nested) Keras 3 graph it belongs to."""

    layer: str
    args: Any
    outputs: list
    call: Any
    graph: Any


def _check_same(model: Any, tr: "_Translator", seed: int) -> None:
    """Every translated call, fed with the Keras 3 layer's own input values (random model inputs), against that
    layer's outputs: each layer is checked by itself, so a wrong one shows even where the model's output does not
    (e.g. an untrained model whose output is the same for every input) and float32 rounding does not add up."""
    from ._keras import tf

    keras = _keras()
    rng = np.random.default_rng(seed)
    xs = [rng.random((2, *t.shape[1:]), dtype=np.float32) for t in model.inputs]
    values = _graph_values(keras, _graph(model), xs, tr)
    for c in tr.checked:
        feed = keras.tree.map_structure(
            lambda v: tf.constant(values[id(v)]) if isinstance(v, keras.KerasTensor) else v, c.args)
        got = c.call(feed)
        for t, b in zip(c.outputs, got if isinstance(got, (list, tuple)) else [got]):
            a = values[id(t)]
            err = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)), initial=0.0))
            scale = max(1.0, float(np.max(np.abs(a), initial=0.0)))
            if not err <= TRANSLATION_TOLERANCE * scale:
                raise ModelLoadError(f"the tf-keras translation of Keras 3 model {model.name!r} differs from it at "
                                     f"layer {c.layer!r} by {err:.3g} (max abs error on the layer's own inputs; "
                                     f"allowed {TRANSLATION_TOLERANCE * scale:.3g})",
                                     hint="please report it with the model; meanwhile profile/export the Keras 3 "
                                          "model directly")


def _graph_values(keras: Any, graph: Any, xs: list, tr: "_Translator") -> dict[int, np.ndarray]:
    """``{id(Keras 3 tensor): value}`` of the arguments and outputs of the checked calls in ``graph`` and in the
    nested models inlined from it (each evaluated on its inputs' values in the enclosing graph)."""
    out = {id(t): x for t, x in zip(graph.inputs, xs)}
    want: dict[int, Any] = {}
    for c in tr.checked:
        if c.graph is graph:
            for t in [*keras.tree.flatten(c.args), *c.outputs]:
                if isinstance(t, keras.KerasTensor) and id(t) not in out:
                    want[id(t)] = t
    nested = [(inner, ins) for inner, outer, ins in tr.nested if outer is graph]
    for _, ins in nested:
        want.update({id(t): t for t in ins if id(t) not in out})
    if want:
        got = keras.Model(graph.inputs, list(want.values()))(list(xs), training=False)
        got = got if isinstance(got, (list, tuple)) else [got]
        out.update({k: np.asarray(v) for k, v in zip(want, got)})
    for inner, ins in nested:
        out.update(_graph_values(keras, inner, [out[id(t)] for t in ins], tr))
    return out


class _Translator:
    """Walks a Keras 3 layer graph in topological order and calls the matching tf-keras layers."""

    def __init__(self, keras: Any, tfk: Any, model_name: str):
        self.k3, self.tfk, self.model_name = keras, tfk, model_name
        self.tensors: dict[int, Any] = {}        # id(Keras 3 KerasTensor) -> tf-keras tensor
        self.layers: dict[int, Any] = {}         # id(Keras 3 layer) -> callable on tf-keras tensors
        self.pairs: list[tuple[Any, Any]] = []   # (Keras 3 layer, tf-keras layer) whose weights are copied
        self.names: set[str] = set()
        self.checked: list[_Checked] = []      # every translated call, for the check
        self.nested: list[tuple[Any, Any, list]] = []   # (nested graph, enclosing graph, its input tensors there)
        self.graph: Any = None

    def run(self, graph: Any) -> None:
        outer, self.graph = self.graph, graph
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                self.node(node)
        self.graph = outer

    def node(self, node: Any) -> None:
        op = node.operation
        if isinstance(op, self.k3.layers.InputLayer):
            return
        args, kwargs = node.arguments.args, {k: v for k, v in node.arguments.kwargs.items()
                                             if v is not None and k not in ("training", "mask")}
        if kwargs:
            raise _unsupported(self.model_name, op, f"is called with arguments {sorted(kwargs)}")
        if isinstance(op, self.k3.Model):   # a nested model: inline its layers
            inner = _graph(op)
            if inner is None:
                raise _unsupported(self.model_name, op, "is a subclassed model")
            for t_in, t_outer in zip(inner.inputs, node.input_tensors):
                self.tensors[id(t_in)] = self.tensors[id(t_outer)]
            self.nested.append((inner, self.graph, list(node.input_tensors)))
            self.run(inner)
            for t_inner, t_out in zip(inner.outputs, node.outputs):
                self.tensors[id(t_out)] = self.tensors[id(t_inner)]
            return
        if not isinstance(op, self.k3.layers.Layer):   # an op on KerasTensors, e.g. `x + 3.0` or `a * b`
            call = self.arithmetic(op, args)
        else:
            fn = self.layers.get(id(op))
            if fn is None:
                fn = self.layers[id(op)] = self.make(op)
            call = lambda a, fn=fn: fn(*a)   # noqa: E731
        out = call(self.k3.tree.map_structure(
            lambda v: self.tensors[id(v)] if isinstance(v, self.k3.KerasTensor) else v, args))
        outs = out if isinstance(out, (list, tuple)) else [out]
        for t, o in zip(node.outputs, outs):
            self.tensors[id(t)] = o
        self.checked.append(_Checked(op.name, args, list(node.outputs), call, self.graph))

    def arithmetic(self, op: Any, args: tuple) -> Any:
        """A callable on the (mapped) arguments doing Keras 3's ``+ - * /`` between tensors (tf-keras merge layers,
        broadcasting like them) or with a scalar (a tf-keras Rescaling: ``x * scale + offset``)."""
        kind = type(op).__name__
        L = self.tfk.layers
        tensors = [isinstance(a, self.k3.KerasTensor) for a in args]
        name = self._name(op.name)
        if len(args) == 2 and all(tensors) and kind in ("Add", "Subtract", "Multiply"):
            merge = getattr(L, kind)(name=name)
            return lambda a: merge(list(a))
        if len(args) == 2 and sum(tensors) == 1 and kind in ("Add", "Subtract", "Multiply", "TrueDivide", "Divide"):
            const = args[1] if tensors[0] else args[0]
            if np.ndim(const) == 0 and np.isfinite(float(const)):
                c, i = float(const), 0 if tensors[0] else 1
                scale, offset = {("Add", True): (1.0, c), ("Add", False): (1.0, c),
                                 ("Subtract", True): (1.0, -c), ("Subtract", False): (-1.0, c),
                                 ("Multiply", True): (c, 0.0), ("Multiply", False): (c, 0.0),
                                 ("TrueDivide", True): (1.0 / c if c else np.inf, 0.0),
                                 ("Divide", True): (1.0 / c if c else np.inf, 0.0)}.get((kind, tensors[0]),
                                                                                        (None, None))
                if scale is not None and np.isfinite(scale):
                    rescale = L.Rescaling(scale, offset=offset, name=name)
                    return lambda a: rescale(a[i])
        raise _unsupported(self.model_name, op, "is an operation with no tf-keras translation "
                                                "(supported: + - * / between tensors or with a number)")

    def _name(self, name: str) -> str:
        base, i = name, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def make(self, op: Any):
        """A callable on tf-keras tensors doing what Keras 3 layer ``op`` does."""
        cls = type(op).__name__
        if cls not in SUPPORTED_LAYERS or not hasattr(self.tfk.layers, cls):
            raise _unsupported(self.model_name, op, "has no tf-keras translation")
        cfg = dict(op.get_config())
        dtype = cfg.pop("dtype", None)
        policy = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
        if policy not in (None, "float32"):
            raise _unsupported(self.model_name, op, f"computes in {policy} (only float32 models are translated)")
        post = None
        if cls == "LeakyReLU":
            cfg["alpha"] = cfg.pop("negative_slope", 0.3)
        if "activation" in cfg:
            act = cfg["activation"]
            act = act if isinstance(act, str) else (act.get("config") if isinstance(act, dict) else None)
            if not isinstance(act, str):
                raise _unsupported(self.model_name, op, f"uses activation {cfg['activation']!r}")
            if act in _COMPOSITE_ACTIVATIONS:
                cfg["activation"], post = "linear", act
            elif act in _SAME_ACTIVATIONS:
                cfg["activation"] = _SAME_ACTIVATIONS[act]
            else:
                raise _unsupported(self.model_name, op, f"uses activation {act!r}, which tf-keras does not have")
        target = getattr(self.tfk.layers, cls)
        cfg = self._fit_config(op, target, cfg)
        cfg["name"] = self._name(op.name)
        if cls == "Activation" and post is not None:   # the composite is the whole layer
            return self._activation(post, cfg["name"])
        layer = target.from_config(cfg)
        self.pairs.append((op, layer))
        if post is None:
            return layer
        act_fn = self._activation(post, self._name(f"{op.name}_{post}"))
        return lambda *a: act_fn(layer(*a))

    def _fit_config(self, op: Any, target: Any, cfg: dict) -> dict:
        """Keep the options the tf-keras layer takes (initializers dropped: the weights are copied); a Keras 3-only
        option that is not off is an error."""
        params = {"name", "trainable"}
        for klass in target.__mro__:   # tf-keras layers pass **kwargs on to their bases
            if "__init__" in vars(klass):
                params |= set(inspect.signature(klass.__init__).parameters)
        out = {}
        for key, value in cfg.items():
            if key.endswith("_initializer"):
                continue
            if key.endswith(("_regularizer", "_constraint")) and isinstance(value, dict):
                value = {"class_name": value.get("class_name"), "config": value.get("config", {})}
            if key in params:
                out[key] = value
            elif value not in _NEUTRAL:
                raise _unsupported(self.model_name, op, f"sets {key}={value!r}, which tf-keras' {target.__name__} "
                                                        "does not have")
        return out

    def _activation(self, kind: str, name: str):
        L = self.tfk.layers
        if kind == "relu6":
            return L.ReLU(max_value=6.0, name=name)
        if kind == "leaky_relu":
            return L.LeakyReLU(alpha=0.2, name=name)
        scale = L.Rescaling(1.0 / 6.0, offset=0.5, name=self._name(f"{name}_scale"))
        clip = L.ReLU(max_value=1.0, name=self._name(f"{name}_clip") if kind != "hard_sigmoid" else name)
        if kind == "hard_sigmoid":
            return lambda x: clip(scale(x))
        mul = L.Multiply(name=name)
        return lambda x: mul([x, clip(scale(x))])
