"""The only module that imports Keras. tf-keras (Keras 2) is required by tensorflow-model-optimization.

Import from here, never ``import tf_keras``/``keras`` elsewhere. Importing this module imports TensorFlow
(seconds), so only code paths that need a model import it.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ._io import read_input_bytes  # noqa: E402
from ._native import quiet_native_logs  # noqa: E402
from .errors import ModelLoadError  # noqa: E402

try:
    with quiet_native_logs():
        import tensorflow as tf  # noqa: E402
        import tf_keras as keras  # noqa: E402

        tf.config.list_physical_devices()  # probe devices now, inside the quiet block (the CUDA probe logs an error)
except ImportError as exc:  # pragma: no cover - depends on the install
    from .errors import MissingDependency

    raise MissingDependency("tensorflow and tf-keras", "tf", purpose="to build, train or convert models") from exc

layers = keras.layers


def tfmot():
    """tensorflow_model_optimization, imported on first use (after TF_USE_LEGACY_KERAS is set)."""
    try:
        import tensorflow_model_optimization as mot
    except ImportError as exc:  # pragma: no cover
        from .errors import MissingDependency

        raise MissingDependency("tensorflow-model-optimization", "tf", purpose="for pruning, clustering and QAT") from exc
    return mot


def saved_model_keras_metadata(path: str) -> list[str]:
    """The Keras metadata (JSON text, one per Keras object) of a SavedModel directory, as tf-keras reads it:
    ``keras_metadata.pb`` plus the metadata older SavedModels keep in ``saved_model.pb``'s object graph. Nothing
    is deserialised."""
    from tf_keras.protobuf import saved_metadata_pb2

    found = []
    meta_file = os.path.join(path, "keras_metadata.pb")
    if os.path.exists(meta_file):
        meta = saved_metadata_pb2.SavedMetadata()
        meta.ParseFromString(read_input_bytes(meta_file, "Keras metadata", limit=256 << 20, error=ModelLoadError))
        found.extend(n.metadata for n in meta.nodes)
    for graph in tf.__internal__.saved_model.parse_saved_model(path).meta_graphs:
        for node in graph.object_graph_def.nodes:
            if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
                found.append(node.user_object.metadata)
    return found


__all__ = ["tf", "keras", "layers", "tfmot", "quiet_native_logs", "saved_model_keras_metadata"]
