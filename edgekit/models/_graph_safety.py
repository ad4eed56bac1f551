"""A SavedModel never runs code it should not: the ops of every graph and function in ``saved_model.pb`` are read as
protobuf, before anything is loaded, and checked against an allowlist.

Loading a SavedModel runs some of its stored functions (a resource's ``_initialize``, the revived ``call`` of a
custom layer when the model runs), so a graph op that writes a file, reads one, talks to the network, runs Python
(``PyFunc``, ``EagerPyFunc``) or loads a library would run with edgekit's rights. Allowed, in every function:

- ops whose registered definition is stateless (pure tensor computation), except those that reach outside the
  process even so (``ReadFile``, ``MatchingFiles``, datasets and readers, ``PyFuncStateless``, protobuf ops with a
  descriptor file, queues, ...), and except ops with reference-typed arguments (TF1 variables, queues);
- a short list of stateful ops that touch only the model's own variables and resources (``VarHandleOp``,
  ``ReadVariableOp``, ``AssignVariableOp``, hash tables of lookup layers, random ops, function calls, ...);
- calls of functions of the same library (checked themselves).

The checkpoint ops ``SaveV2``, ``RestoreV2`` and ``MergeV2Checkpoints`` are allowed only where TensorFlow puts them:
in the main graph's saver and in the ``__inference__traced_save_N``/``__inference__traced_restore_N`` functions that
only the main graph calls. Anything else is refused (UntrustedModelCode) unless the caller trusts the file, naming
the op and the function (or graph) it is in. Imports TensorFlow (only its protobuf modules and op registry).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from .._io import read_input_bytes
from ._safety import TRUST_HINT, Finding, UntrustedModelCode

#: stateful ops that only touch the model's own variables/resources (or draw random numbers), and function calls
STATEFUL_ALLOWED = frozenset("""
VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp VariableShape
DestroyResourceOp DisableCopyOnRead ResourceGather ResourceGatherNd ResourceScatterAdd ResourceScatterSub
ResourceScatterMul ResourceScatterDiv ResourceScatterMin ResourceScatterMax ResourceScatterUpdate
ResourceScatterNdAdd ResourceScatterNdSub ResourceScatterNdUpdate ResourceScatterNdMin ResourceScatterNdMax
StatefulPartitionedCall PartitionedCall If While Case StatelessIf StatelessWhile StatelessCase
RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal RandomShuffle RandomGamma RandomGammaGrad
RandomPoisson RandomPoissonV2 Multinomial ParameterizedTruncatedNormal StatefulUniform StatefulUniformInt
StatefulUniformFullInt StatefulStandardNormal StatefulStandardNormalV2 StatefulTruncatedNormal
StatefulRandomBinomial RngSkip RngReadAndSkip NonDeterministicInts
HashTableV2 MutableHashTableV2 MutableHashTableOfTensorsV2 MutableDenseHashTableV2 AnonymousHashTable
AnonymousMutableHashTable AnonymousMutableHashTableOfTensors AnonymousMutableDenseHashTable InitializeTableV2
LookupTableFindV2 LookupTableImportV2 LookupTableInsertV2 LookupTableRemoveV2 LookupTableSizeV2
LookupTableExportV2
TensorArrayV3 TensorArrayWriteV3 TensorArrayReadV3 TensorArrayGatherV3 TensorArrayScatterV3 TensorArraySizeV3
TensorArrayCloseV3 TensorArraySplitV3 TensorArrayConcatV3 TensorArrayGradV3 TensorArrayGradWithShape
CudnnRNN CudnnRNNV2 CudnnRNNV3 CudnnRNNBackprop CudnnRNNBackpropV2 CudnnRNNBackpropV3
Assert NoOp Placeholder Const
""".split())
#: checkpoint ops: only in the main graph's saver and the traced save/restore functions it calls
SAVER_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints", "SaveSlices", "RestoreSlice", "ShardedFilename",
                       "ShardedFilespec"})
SAVER_FUNCTION = re.compile(r"__inference__traced_(save|restore)_\d+")
#: stateless ops that still reach outside the process (files, datasets, network, Python, TPU/XLA runtime)
STATELESS_REFUSED = re.compile(
    r"Dataset|Iterator|Reader|Queue|Barrier|Accumulator|Summary|^Debug|Py|TPU|Tpu|^Xla|Rpc|Send|Recv|Collective|"
    r"File|Proto|ImmutableConst|^_|Copy|Table|Snapshot|Infeed|Outfeed|Remote|Mesh|Sleep|^Batch$|^BatchFunction$|"
    r"^Unbatch|GenerateVocabRemapping|LoadAndRemap|Sdca|BoostedTrees|Print|Variable|Resource|Mutex|Stage|^Stack|"
    r"TensorArray|Session|Handle")


def _op_allowed(op: str, opdef: Any) -> bool:
    if op in STATEFUL_ALLOWED:
        return True
    if opdef is None or opdef.is_stateful or STATELESS_REFUSED.search(op):
        return False
    return not any(arg.is_ref for arg in list(opdef.input_arg) + list(opdef.output_arg))


def read_saved_model_proto(path: Path) -> Any:
    """The ``SavedModel`` protobuf of directory ``path`` (``saved_model.pb`` or ``.pbtxt``), size-checked first."""
    from .._keras import tf  # noqa: F401 - tensorflow's protobuf modules come with it
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    if pb.exists():
        sm.ParseFromString(read_input_bytes(pb, "SavedModel graph", limit=SAVED_MODEL_MAX_BYTES))
    else:
        from google.protobuf import text_format

        text_format.Parse(read_input_bytes(path / "saved_model.pbtxt", "SavedModel graph",
                                           limit=SAVED_MODEL_MAX_BYTES).decode("utf-8", "replace"), sm)
    return sm


#: saved_model.pb larger than this is refused before parsing (protobuf's own limit is 2 GiB)
SAVED_MODEL_MAX_BYTES = 1 << 30


def _funcs_in_attrs(node: Any) -> Iterator[str]:
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        for f in value.list.func:
            yield f.name


def find_graph_code(sm: Any) -> list[Finding]:
    """Every op in a SavedModel protobuf that is not on the allowlist, as findings naming the op and where it is."""
    from tensorflow.python.framework import op_def_registry

    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()

    def check(op: str, where: str, library: set[str], saver_ok: bool) -> None:
        if op in library or (saver_ok and op in SAVER_OPS) or _op_allowed(op, op_def_registry.get(op)):
            return
        if (op, where) not in seen:
            seen.add((op, where))
            kind = "unknown op" if op_def_registry.get(op) is None else "op"
            why = ("its checkpoint op outside the saver" if op in SAVER_OPS
                   else "not on the allowlist of ops that only compute tensors or touch the model's own variables")
            found.append(Finding(where, f"{kind} {op}", why))

    for mg in sm.meta_graphs:
        library = {f.signature.name for f in mg.graph_def.library.function}
        called_outside_main: set[str] = set()
        for f in mg.graph_def.library.function:
            for node in f.node_def:
                called_outside_main.update(_funcs_in_attrs(node))
                if node.op in library:
                    called_outside_main.add(node.op)
        called_outside_main.update(mg.object_graph_def.concrete_functions.keys())
        for node in mg.object_graph_def.nodes:
            kind = node.WhichOneof("kind")
            if kind == "function":
                called_outside_main.update(node.function.concrete_functions)
            elif kind == "bare_concrete_function":
                called_outside_main.add(node.bare_concrete_function.concrete_function_name)
        for node in mg.graph_def.node:
            check(node.op, "the main graph", library, saver_ok=True)
        for f in mg.graph_def.library.function:
            name = f.signature.name
            saver_ok = bool(SAVER_FUNCTION.fullmatch(name)) and name not in called_outside_main
            for node in f.node_def:
                check(node.op, f"function {name}", library, saver_ok)
    return found


def check_saved_model_graph(path: Path, where: str) -> None:
    """Raise UntrustedModelCode when the SavedModel at ``path`` holds ops outside the allowlist (see module doc)."""
    found = find_graph_code(read_saved_model_proto(path))
    if not found:
        return
    shown = "; ".join(f"{f.kind} in {f.layer}" for f in found[:3]) + (
        f"; and {len(found) - 3} more" if len(found) > 3 else "")
    raise UntrustedModelCode(f"SavedModel {where!r} would run code when loaded: its graph holds {shown} (ops outside "
                             "the allowlist of tensor math and the model's own variables may touch files, the network "
                             "or processes)", hint=TRUST_HINT, findings=found)
