"""Build small .tflite flatbuffers for tests without TensorFlow (schema object API of ai-edge-litert), and edit
converted ones: MediaPipe-style files with custom ops the local runtime lacks."""
from __future__ import annotations

import numpy as np


def build(ops, tensors, inputs, outputs, signature=None) -> bytes:
    """``tensors``: [(name, shape, dtype name, const array or None)]; ``ops``: [(op name or 'custom:Code', [in], [out])];
    ``signature``: ({input key: tensor}, {output key: tensor}) for a serving_default SignatureDef."""
    import flatbuffers

    from edgekit._tflite import CUSTOM, schema

    s = schema()
    m = s.ModelT()
    m.version, m.description = 3, "edgekit test model"
    m.buffers = [s.BufferT()]
    ts = []
    for name, shape, dtype, const in tensors:
        t = s.TensorT()
        t.name, t.shape, t.type = name, list(shape), getattr(s.TensorType, dtype.upper())
        t.buffer = 0
        if const is not None:
            b = s.BufferT()
            b.data = list(np.ascontiguousarray(const).tobytes())
            m.buffers.append(b)
            t.buffer = len(m.buffers) - 1
        ts.append(t)
    codes, opts = [], []
    for name, ins, outs in ops:
        oc = s.OperatorCodeT()
        if name.startswith("custom:"):
            oc.builtinCode = oc.deprecatedBuiltinCode = CUSTOM
            oc.customCode = name.split(":", 1)[1]
        else:
            oc.builtinCode = oc.deprecatedBuiltinCode = getattr(s.BuiltinOperator, name)
        oc.version = 1
        codes.append(oc)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = len(codes) - 1, list(ins), list(outs)
        opts.append(op)
    m.operatorCodes = codes
    sg = s.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators, sg.name = ts, list(inputs), list(outputs), opts, "main"
    m.subgraphs = [sg]
    if signature is not None:
        sd = s.SignatureDefT()
        sd.signatureKey, sd.subgraphIndex = "serving_default", 0
        maps = []
        for side in signature:
            items = []
            for key, idx in side.items():
                tm = s.TensorMapT()
                tm.name, tm.tensorIndex = key, idx
                items.append(tm)
            maps.append(items)
        sd.inputs, sd.outputs = maps
        m.signatureDefs = [sd]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def mediapipe_like() -> bytes:
    """image [1,8,8,3] -> ADD(bias) -> Convolution2DTransposeBias -> Landmarks2TransformMatrix -> two outputs,
    with a 3-float bias and a 48-float kernel: two custom ops LiteRT's builtin resolver lacks."""
    tensors = [("image", [1, 8, 8, 3], "float32", None),
               ("bias", [3], "float32", np.arange(3, dtype=np.float32)),
               ("biased", [1, 8, 8, 3], "float32", None),
               ("kernel", [4, 2, 2, 3], "float32", np.linspace(-1, 1, 48, dtype=np.float32)),
               ("upsampled", [1, 16, 16, 4], "float32", None),
               ("matrix", [1, 4, 4], "float32", None)]
    ops = [("ADD", [0, 1], [2]), ("custom:Convolution2DTransposeBias", [2, 3], [4]),
           ("custom:Landmarks2TransformMatrix", [4], [5])]
    return build(ops, tensors, [0], [4, 5], signature=({"image": 0}, {"mask": 4, "transform": 5}))


def rename_op(data: bytes, builtin: str, custom_code: str) -> bytes:
    """Turn every ``builtin`` operator code of a converted file into the custom op ``custom_code``."""
    import flatbuffers

    from edgekit._tflite import CUSTOM, schema

    s = schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    code = getattr(s.BuiltinOperator, builtin)
    for oc in m.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            oc.builtinCode = oc.deprecatedBuiltinCode = CUSTOM
            oc.customCode = custom_code
    b = flatbuffers.Builder(len(data) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
