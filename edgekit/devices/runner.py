#!/usr/bin/env python3
"""edgekit on-device runner: time a .tflite/.onnx model the way TFLite's benchmark_model does; print ONE JSON.

Self-contained on purpose: it is copied to the device and needs only Python >= 3.9, numpy and one interpreter
(ai-edge-litert, else tflite-runtime, else tensorflow.lite; onnxruntime for .onnx). It never imports edgekit, and
TensorFlow only when that is the only TFLite interpreter present.

    python runner.py MODEL [--threads N] [--delegate auto|xnnpack|none|PATH.so] [--warmup N] [--runs N]
                           [--max-seconds S] [--input FILE.npy|FILE.npz] [--seed N] [--runtime NAME]
                           [--verify-inputs FILE.npz --outputs FILE.npz] [--profile-ops]
                           [--package FILE.ekpkg [--base DEPLOYED] [--unpacker format.py]]
    python runner.py --probe          # what this device has: machine, python, numpy, interpreters

``--verify-inputs`` replays float inputs (``input_i`` + ``input_names``, edgekit's ``.verify.npz``) one sample at a
time after the timing, quantizing/dequantizing integer I/O with the tensors' scale and zero point, and writes the
float outputs to ``--outputs`` (``output_k`` + ``output_names``). The system state (CPU governor and frequency per
core, thermal zones, load average, CPU affinity) is read before and after the timed runs on Linux.

Only ``invoke()`` (onnxruntime: ``run_with_iobinding``) is timed, with ``time.perf_counter_ns``; inputs are set
once, as benchmark_model does. ``--package`` first restores MODEL from an edgekit update package with edgekit's
self-contained unpacker (``format.py``, sent beside the runner) and checks its sha256. On error the JSON has an
``error`` object {kind, message, hint} and the exit code is non-zero (2 bad arguments, 3 runtime missing, 4 model
cannot load, 5 inference failed, 1 anything else).
"""
import argparse
import hashlib
import importlib
import json
import os
import platform
import resource
import sys
import time

SCHEMA = 2  # 2: memory in bytes (peak_rss_bytes, start_rss_bytes, init_delta_bytes, overall_delta_bytes)
EXIT = {"bad_argument": 2, "runtime_missing": 3, "model_load_error": 4, "inference_error": 5, "internal": 1}
TFLITE_CANDIDATES = (  # (display name, module with Interpreter, distribution name for the version)
    ("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow", "tensorflow", "tensorflow"),
)
INSTALL_HINT = ("install an interpreter on the device: pip install ai-edge-litert  (or: pip install tflite-runtime "
                "'numpy<2' on older boards); for .onnx: pip install onnxruntime")


class RunnerError(Exception):
    def __init__(self, kind, message, hint=None):
        Exception.__init__(self, message)
        self.kind, self.message, self.hint = kind, message, hint


# ----------------------------------------------------------------------------------------------- device facts
def _dist_version(dist):
    try:
        from importlib import metadata
        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - metadata missing is not an error
        return None


#: ARM "CPU implementer" -> {"CPU part": core name} (the Linux kernel's and util-linux lscpu's MIDR tables)
ARM_CORES = {
    0x41: {0xd02: "Cortex-A34", 0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55",
           0xd06: "Cortex-A65", 0xd07: "Cortex-A57", 0xd08: "Cortex-A72", 0xd09: "Cortex-A73",
           0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76", 0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77",
           0xd0e: "Cortex-A76AE", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78", 0xd42: "Cortex-A78AE",
           0xd43: "Cortex-A65AE", 0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710",
           0xd48: "Cortex-X2", 0xd49: "Neoverse-N2", 0xd4a: "Neoverse-E1", 0xd4b: "Cortex-A78C",
           0xd4c: "Cortex-X1C", 0xd4d: "Cortex-A715", 0xd4e: "Cortex-X3", 0xd4f: "Neoverse-V2",
           0xd80: "Cortex-A520", 0xd81: "Cortex-A720", 0xd82: "Cortex-X4", 0xd84: "Neoverse-V3",
           0xd85: "Cortex-X925", 0xd87: "Cortex-A725", 0xd8e: "Neoverse-N3",
           0xc05: "Cortex-A5", 0xc07: "Cortex-A7", 0xc08: "Cortex-A8", 0xc09: "Cortex-A9", 0xc0d: "Cortex-A12",
           0xc0e: "Cortex-A17", 0xc0f: "Cortex-A15", 0xb76: "ARM1176"},
    0x42: {0x516: "ThunderX2", 0xf16: "Vulcan"},
    0x43: {0x0a1: "ThunderX", 0x0af: "ThunderX2", 0x0b8: "ThunderX3"},
    0x46: {0x001: "A64FX"},
    0x48: {0xd01: "Kunpeng-920"},
    0x4e: {0x004: "Carmel"},
    0x51: {0x800: "Kryo-2xx-Gold", 0x801: "Kryo-2xx-Silver", 0x802: "Kryo-3xx-Gold", 0x803: "Kryo-3xx-Silver",
           0x804: "Kryo-4xx-Gold", 0x805: "Kryo-4xx-Silver", 0xc00: "Falkor", 0xc01: "Saphira"},
    0x61: {0x022: "Apple-M1-Icestorm", 0x023: "Apple-M1-Firestorm", 0x032: "Apple-M2-Blizzard",
           0x033: "Apple-M2-Avalanche"},
    0xc0: {0xac3: "Ampere-1", 0xac4: "Ampere-1a"},
}
ARM_IMPLEMENTERS = {0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu", 0x48: "HiSilicon",
                    0x4e: "NVIDIA", 0x51: "Qualcomm", 0x61: "Apple", 0xc0: "Ampere"}


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:
        return ""


def _field(text, key):
    """Every value of ``key:`` in /proc/cpuinfo, in order."""
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if ":" in line and line.split(":", 1)[0].strip() == key]


def _int(value):
    try:
        return int(value, 0)
    except (TypeError, ValueError):
        return None


def arm_core(implementer, part):
    """The core's name for a MIDR implementer/part pair, e.g. (0x41, 0xd08) -> "Cortex-A72"."""
    name = ARM_CORES.get(implementer, {}).get(part)
    if name:
        return name
    return "%s part 0x%03x" % (ARM_IMPLEMENTERS.get(implementer, "implementer 0x%02x" % implementer), part)


def cpu_name(text=None):
    """The CPU this runs on, from /proc/cpuinfo: ARM cores by "CPU implementer"/"CPU part" (a big.LITTLE SoC:
    "4x Cortex-A76 + 4x Cortex-A55", biggest count first), else the x86 "model name"; None when unknown."""
    here, text = text is None, _cpuinfo() if text is None else text
    impls, parts = _field(text, "CPU implementer"), _field(text, "CPU part")
    if parts:
        counts = {}
        for k, part in enumerate(parts):
            impl = _int(impls[k] if k < len(impls) else (impls[-1] if impls else None))
            p = _int(part)
            name = arm_core(impl, p) if impl is not None and p is not None else "CPU part " + part
            counts[name] = counts.get(name, 0) + 1
        if len(counts) == 1:
            return next(iter(counts))
        return " + ".join("%dx %s" % (n, c) for c, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    for key in ("model name", "cpu model", "cpu"):
        values = _field(text, key)
        if values:
            return values[0]
    return (platform.processor() or None) if here else None  # another machine's text: never this host's CPU


def _cpu_model(text=None):
    """The board or CPU model line (a Pi's "Model", x86 "model name", "Hardware"), as the kernel names it."""
    text = _cpuinfo() if text is None else text
    for key in ("model name", "Model", "Hardware", "cpu model"):
        values = _field(text, key)
        if values:
            return values[0]
    return None


def machine_info():
    info = {"machine": platform.machine(), "system": platform.system(), "release": platform.release(),
            "cpu": cpu_name(), "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "python_executable": sys.executable}
    if hasattr(os, "sched_getaffinity"):
        try:
            info["cpu_affinity"] = sorted(os.sched_getaffinity(0))
        except OSError:
            pass
    numpy = sys.modules.get("numpy")
    info["numpy"] = getattr(numpy, "__version__", None) if numpy else _dist_version("numpy")
    return info


def _proc_status_bytes(key):
    """A ``/proc/self/status`` memory line (``VmHWM``, ``VmRSS``; kB = KiB) in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss_hwm_bytes():
    """Peak resident set size of this process in bytes (VmHWM, else ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = _proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _rss_now_bytes():
    return _proc_status_bytes("VmRSS")


def probe():
    """What this device can run, without importing any interpreter (TensorFlow import takes seconds)."""
    from importlib.util import find_spec

    def has(mod):
        try:
            return find_spec(mod) is not None
        except (ImportError, ValueError):
            return False

    runtimes = {}
    for name, mod, dist in TFLITE_CANDIDATES + (("onnxruntime", "onnxruntime", "onnxruntime"),):
        top = mod.split(".")[0]
        runtimes[name] = {"available": has(top), "version": _dist_version(dist) if has(top) else None}
    info = {"schema": SCHEMA, "probe": True, "machine": machine_info(), "numpy_available": has("numpy"),
            "runtimes": runtimes}
    info["tflite_runtime_preferred"] = next((n for n, m, d in TFLITE_CANDIDATES if runtimes[n]["available"]), None)
    return info


# ----------------------------------------------------------------------------------------------- interpreters
def _import_numpy():
    try:
        import numpy
    except ImportError as exc:
        raise RunnerError("runtime_missing", "numpy is not installed on the device: %s" % exc,
                          "pip install numpy (with tflite-runtime: pip install 'numpy<2')")
    return numpy


RUNTIME_ALIASES = {"ai-edge-litert": "ai_edge_litert", "litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime",
                   "tf": "tensorflow", "ort": "onnxruntime"}


def runtime_name(name):
    """A runtime name as the profile's ``runtime:`` or --runtime gives it -> the runner's name (None: any)."""
    if not name or name == "auto":
        return None
    key = RUNTIME_ALIASES.get(name.lower(), name.lower().replace("-", "_"))
    known = [n for n, m, d in TFLITE_CANDIDATES] + ["onnxruntime"]
    if key not in known:
        raise RunnerError("bad_argument", "unknown runtime %r" % name, "use one of: auto, " + ", ".join(known))
    return key


def _load_tflite_module(prefer=None):
    errors = []
    candidates = [c for c in TFLITE_CANDIDATES if prefer in (None, c[0])]
    for name, mod, dist in candidates:
        try:
            module = importlib.import_module(mod)
        except ImportError as exc:  # also catches tflite-runtime built against numpy 1 under numpy 2
            errors.append("%s: %s" % (name, str(exc).strip().splitlines()[-1] if str(exc).strip() else exc))
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. AttributeError from a numpy ABI mismatch
            errors.append("%s: %s: %s" % (name, type(exc).__name__, exc))
            continue
        if name == "tensorflow":
            module = module.lite
        version = _dist_version(dist) or getattr(module, "__version__", None)
        return name, version, module
    if prefer:
        raise RunnerError("runtime_missing", "the runtime %s asked for (--runtime / the profile's runtime:) cannot be "
                          "imported (%s)" % (prefer, "; ".join(errors)),
                          "install it on the device, or drop runtime: from the profile to use any interpreter")
    raise RunnerError("runtime_missing", "no TFLite interpreter could be imported (%s)" % "; ".join(errors),
                      INSTALL_HINT)


def _load_error(runtime, path, exc):
    """The interpreter's load failure as one line; an op the runtime lacks is named (custom ops, newer builtins)."""
    import re

    text = str(exc).strip()
    ops = re.findall(r"(?:unresolved custom op|Didn't find custom operator for name)[:\s']*([\w\-]+(?:\.[\w\-]+)*)",
                     text, re.I)
    ops += re.findall(r"Didn't find op for builtin opcode '([\w]+)' version '(\d+)'", text)
    if ops:
        names = sorted({o if isinstance(o, str) else "%s v%s" % o for o in ops})
        return RunnerError("model_load_error", "%s cannot run %s: it lacks the op(s) %s" % (
            runtime, os.path.basename(path), ", ".join(names)),
            "custom ops need an interpreter built with them (register them, e.g. MediaPipe's ops), or a newer "
            "runtime for newer builtin op versions; edgekit inspect lists the model's ops")
    line = text.splitlines()[-1] if text else type(exc).__name__
    return RunnerError("model_load_error", "%s cannot load %s: %s" % (runtime, os.path.basename(path), line))


class TFLiteModel:
    def __init__(self, np, path, threads, delegate, prefer=None):
        self.runtime, self.version, mod = _load_tflite_module(prefer)
        kwargs = {"model_path": path}
        if threads:
            kwargs["num_threads"] = threads
        self.delegate = delegate or "auto"
        if delegate == "none":
            resolver = getattr(mod, "OpResolverType", None) or getattr(getattr(mod, "experimental", None),
                                                                        "OpResolverType", None)
            if resolver is None:
                raise RunnerError("bad_argument", "%s %s cannot disable the default XNNPACK delegate"
                                  % (self.runtime, self.version))
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate not in (None, "auto", "xnnpack"):
            if not os.path.isfile(delegate):
                raise RunnerError("bad_argument", "external delegate %r does not exist on the device" % delegate)
            load = getattr(mod, "load_delegate", None) or mod.experimental.load_delegate
            try:
                kwargs["experimental_delegates"] = [load(delegate)]
            except Exception as exc:  # noqa: BLE001
                raise RunnerError("model_load_error", "cannot load delegate %s: %s" % (delegate, exc))
        try:
            self.interp = mod.Interpreter(**kwargs)
            inputs = self.interp.get_input_details()
            for d in inputs:  # dynamic dims (-1) -> 1, as benchmark_model does without --input_layer_shape
                sig = d.get("shape_signature")
                if sig is not None and any(int(s) < 0 for s in sig):
                    self.interp.resize_tensor_input(d["index"], [max(int(s), 1) for s in sig])
            self.interp.allocate_tensors()
        except RunnerError:
            raise
        except Exception as exc:  # noqa: BLE001 - the interpreter raises ValueError/RuntimeError on bad models
            raise _load_error(self.runtime, path, exc)
        self.np = np
        self.inputs = [self._spec(d) for d in self.interp.get_input_details()]
        self.outputs = [self._spec(d) for d in self.interp.get_output_details()]

    def _spec(self, d):
        q = d.get("quantization") or (0.0, 0)
        return {"name": d["name"], "index": int(d["index"]), "shape": [int(s) for s in d["shape"]],
                "dtype": self.np.dtype(d["dtype"]).name, "scale": float(q[0]), "zero_point": int(q[1])}

    def set_inputs(self, arrays):
        for spec, arr in zip(self.inputs, arrays):
            self.interp.set_tensor(spec["index"], arr)

    def invoker(self):
        return self.interp.invoke

    def run(self, arrays):
        self.set_inputs(arrays)
        self.interp.invoke()
        return [self.interp.get_tensor(s["index"]).copy() for s in self.outputs]

    def op_profile(self, runs):
        return {"available": False, "runtime": "%s %s" % (self.runtime, self.version),
                "reason": "%s's Python interpreter exposes no per-op timings; for per-op times run TFLite's "
                          "benchmark_model with --enable_op_profiling=true (edgekit does on benchmark_model devices)"
                          % self.runtime}


class OnnxModel:
    def __init__(self, np, path, threads, delegate, prefer=None, profile_dir=None):
        # onnxruntime writes a device id and an event database under ~/.cache/Microsoft at import unless this is
        # set first (a user's own setting wins); disable_telemetry_events covers an already imported module
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RunnerError("runtime_missing", "onnxruntime is not installed on the device (%s)" % exc,
                              "pip install onnxruntime")
        if os.environ.get("ORT_DISABLE_TELEMETRY") == "1" and hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        self.np, self.ort = np, ort
        self.runtime, self.version = "onnxruntime", ort.__version__
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.profiling = bool(profile_dir)
        if profile_dir:
            opts.enable_profiling = True
            opts.profile_file_prefix = os.path.join(profile_dir, "ort-profile")
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self.delegate = delegate or "auto"
        if delegate == "xnnpack":
            if "XnnpackExecutionProvider" not in ort.get_available_providers():
                raise RunnerError("bad_argument", "this onnxruntime has no XnnpackExecutionProvider",
                                  "use --delegate auto (CPU execution provider) for .onnx")
            providers = [("XnnpackExecutionProvider", {"intra_op_num_threads": threads or 1}),
                         "CPUExecutionProvider"]
        elif delegate not in (None, "auto", "none"):
            raise RunnerError("bad_argument", "external delegates are TFLite-only; got %r for an .onnx model"
                              % delegate)
        try:
            self.sess = ort.InferenceSession(path, sess_options=opts, providers=providers)
        except Exception as exc:  # noqa: BLE001
            raise _load_error("onnxruntime", path, exc)
        self.inputs = [self._spec(i, x) for i, x in enumerate(self.sess.get_inputs())]
        self.outputs = [self._spec(i, x) for i, x in enumerate(self.sess.get_outputs())]
        self.binding = self.sess.io_binding()

    def _spec(self, i, arg):
        t = arg.type  # e.g. "tensor(float)"
        names = {"float": "float32", "double": "float64", "float16": "float16", "int8": "int8", "uint8": "uint8",
                 "int16": "int16", "int32": "int32", "int64": "int64", "bool": "bool"}
        dtype = names.get(t[t.find("(") + 1:-1], "float32")
        shape = [s if isinstance(s, int) and s > 0 else 1 for s in arg.shape]
        return {"name": arg.name, "index": i, "shape": shape, "dtype": dtype, "scale": 0.0, "zero_point": 0}

    def set_inputs(self, arrays):
        for spec, arr in zip(self.inputs, arrays):
            self.binding.bind_cpu_input(spec["name"], self.np.ascontiguousarray(arr))
        for spec in self.outputs:
            self.binding.bind_output(spec["name"])

    def invoker(self):
        run, binding = self.sess.run_with_iobinding, self.binding
        return lambda: run(binding)

    def run(self, arrays):
        feeds = dict((s["name"], self.np.ascontiguousarray(a)) for s, a in zip(self.inputs, arrays))
        return [self.np.asarray(o) for o in self.sess.run([s["name"] for s in self.outputs], feeds)]

    def op_profile(self, runs):
        """Per-node kernel time from onnxruntime's profiling JSON (Chrome trace events), averaged per run."""
        if not self.profiling:
            return None
        path = self.sess.end_profiling()
        try:
            with open(path) as fh:
                events = json.load(fh)
        finally:
            try:
                os.remove(path)
            except OSError:
                pass
        nodes = {}
        for ev in events:
            if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
                continue
            args = ev.get("args") or {}
            name = ev["name"][:-len("_kernel_time")]
            d = nodes.setdefault(name, {"name": name, "op": args.get("op_name"), "provider": args.get("provider"),
                                        "us": []})
            d["us"].append(float(ev.get("dur", 0)))
        ops = []
        for d in nodes.values():
            us = sorted(d["us"][1:] if len(d["us"]) > 1 else d["us"])  # the first call carries one-time setup
            med = us[len(us) // 2] if len(us) % 2 else (us[len(us) // 2 - 1] + us[len(us) // 2]) / 2.0
            ops.append({"name": d["name"], "op": d["op"], "provider": d["provider"], "calls": len(d["us"]),
                        "avg_ms": med / 1000.0})  # the median: robust to the odd preempted call
        ops.sort(key=lambda o: -o["avg_ms"])
        return {"available": True, "runtime": "onnxruntime %s" % self.version, "source": "onnxruntime profiling JSON (median per op)",
                "runs": runs, "ops": ops}


# ----------------------------------------------------------------------------------------------- inputs, stats
def _short(name):
    """``serving_default_image:0`` -> ``image`` (the name a user gave the Keras input)."""
    if name.startswith("serving_default_"):
        name = name[len("serving_default_"):]
    return name.split(":")[0]


def match_inputs(specs, keys, where):
    """Which key of a .npz feeds which model input: by name (exact, then without ``serving_default_``/``:0``), a
    single array for a single input, or ``arr_0, arr_1, ...`` (np.savez positional) in order."""
    keys = list(keys)
    by_exact = dict((k, k) for k in keys)
    by_short = dict((_short(k), k) for k in keys)
    picked = []
    for s in specs:
        k = by_exact.get(s["name"]) or by_short.get(_short(s["name"]))
        picked.append(k)
    if all(picked) and len(set(picked)) == len(picked):
        return picked
    if len(specs) == 1 and len(keys) == 1:
        return keys
    if len(keys) == len(specs) and keys == ["arr_%d" % i for i in range(len(keys))]:
        return keys
    raise RunnerError("bad_argument", "cannot match the arrays in %s (%s) to the model's inputs (%s)" % (
        where, ", ".join(keys), ", ".join(s["name"] for s in specs)),
        "save one array per input under the input's name: np.savez(f, **{name: array})")


def make_inputs(np, specs, input_file, seed):
    """Random inputs within each input's dtype range (integer: full range; float: uniform [0, 1)) or a file."""
    if input_file:
        if not os.path.isfile(input_file):
            raise RunnerError("bad_argument", "input file %r does not exist" % input_file)
        try:
            data = np.load(input_file, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise RunnerError("bad_argument", "cannot read %s: %s" % (input_file, exc))
        if hasattr(data, "files"):  # .npz: by input name
            arrays = [data[k] for k in match_inputs(specs, data.files, input_file)]
        else:
            arrays = [data]
        if len(arrays) != len(specs):
            raise RunnerError("bad_argument", "the model has %d inputs but %s holds %d arrays"
                              % (len(specs), input_file, len(arrays)), "pass an .npz with one array per input")
        for s, a in zip(specs, arrays):
            if list(a.shape) != s["shape"] or a.dtype.name != s["dtype"]:
                raise RunnerError("bad_argument", "input %r needs %s %s, %s holds %s %s" % (
                    s["name"], s["dtype"], s["shape"], input_file, a.dtype.name, list(a.shape)),
                    "save the array with the input's exact shape and dtype")
        return arrays
    rng = np.random.RandomState(seed)
    arrays = []
    for s in specs:
        dt = np.dtype(s["dtype"])
        if dt.kind in "iu":
            info = np.iinfo(dt)
            lo, hi = (max(int(info.min), -1000), min(int(info.max), 1000)) if dt.itemsize > 2 else (info.min,
                                                                                                   info.max)
            arr = rng.randint(int(lo), int(hi) + 1, size=s["shape"]).astype(dt)
        elif dt.kind == "b":
            arr = rng.randint(0, 2, size=s["shape"]).astype(dt)
        else:
            arr = rng.uniform(0.0, 1.0, size=s["shape"]).astype(dt)
        arrays.append(arr)
    return arrays


def summarize(np, lat_ns):
    """benchmark_model's statistics (plus p90/p99) in milliseconds."""
    if not lat_ns:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None,
                "p5": None, "p50": None, "p90": None, "p95": None, "p99": None}
    a = np.asarray(lat_ns, dtype=np.float64) / 1e6
    p = np.percentile(a, [5, 50, 90, 95, 99])
    return {"count": int(a.size), "mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
            "max": float(a.max()), "p5": float(p[0]), "p50": float(p[1]), "p90": float(p[2]), "p95": float(p[3]),
            "p99": float(p[4])}


def timed_loop(invoke, n, max_ns, clock=time.perf_counter_ns):
    """Time ``n`` calls of ``invoke``; stop early once ``max_ns`` have elapsed. Returns per-call nanoseconds."""
    lat = []  # grown, not preallocated: --runs 10**8 with --max-seconds must not inflate the peak RSS we report
    append = lat.append
    deadline = clock() + max_ns
    while len(lat) < n:
        t0 = clock()
        invoke()
        t1 = clock()
        append(t1 - t0)
        if t1 > deadline:
            break
    return lat


# ----------------------------------------------------------------------------------------------- system state
def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def system_state():
    """CPU governor and current frequency per core, thermal zones, load average, affinity (Linux; else partial)."""
    import glob

    cpus = {}
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*"), key=lambda x: int(x.rsplit("cpu", 1)[1])):
        n = int(d.rsplit("cpu", 1)[1])
        freq = _read(d + "/cpufreq/scaling_cur_freq")
        cpus[str(n)] = {"governor": _read(d + "/cpufreq/scaling_governor"),
                        "freq_mhz": int(freq) / 1000.0 if freq and freq.isdigit() else None}
    thermal = {}
    for d in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        t = _read(d + "/temp")
        if t and t.lstrip("-").isdigit():
            thermal[_read(d + "/type") or os.path.basename(d)] = int(t) / 1000.0
    try:
        load = list(os.getloadavg())
    except (OSError, AttributeError):
        load = None
    state = {"time": time.time(), "cpus": cpus, "thermal_c": thermal, "loadavg": load}
    if hasattr(os, "sched_getaffinity"):
        try:
            aff = sorted(os.sched_getaffinity(0))
            state["affinity"] = aff
            state["pinned"] = len(aff) < (os.cpu_count() or len(aff))
        except OSError:
            pass
    return state


# ----------------------------------------------------------------------------------------------- parity
def _to_dtype(np, x, spec):
    """Float -> the input's dtype: ``round(x / scale) + zero_point`` clipped for integer inputs."""
    dt = np.dtype(spec["dtype"])
    if dt.kind in "iu" and spec["scale"] > 0:
        info = np.iinfo(dt)
        q = np.rint(np.asarray(x, np.float64) / spec["scale"]) + spec["zero_point"]
        return np.clip(q, info.min, info.max).astype(dt)
    return np.asarray(x, dtype=dt)


def _to_float(np, y, spec):
    if np.dtype(spec["dtype"]).kind in "iu" and spec["scale"] > 0:
        return ((y.astype(np.float32) - np.float32(spec["zero_point"])) * np.float32(spec["scale"])).astype(np.float32)
    return np.asarray(y, dtype=np.float32)


def replay(np, model, inputs_file, outputs_file):
    """Run every sample of ``inputs_file`` (float, one sample at a time; a model with a fixed batch of B takes B at a
    time, the last ones padded with copies of the last sample) and write the float outputs."""
    try:
        data = np.load(inputs_file, allow_pickle=False)
        names = [str(n) for n in data["input_names"]] if "input_names" in data.files else None
        keys = [k for k in data.files if k.startswith("input_") and k != "input_names"]
        keys.sort(key=lambda k: int(k.split("_", 1)[1]))
        arrays = dict(zip(names or keys, [data[k] for k in keys]))
    except Exception as exc:  # noqa: BLE001
        raise RunnerError("bad_argument", "cannot read the verification inputs %s: %s" % (inputs_file, exc))
    feed = [arrays[k] for k in match_inputs(model.inputs, list(arrays), inputs_file)]
    n = len(feed[0])
    outs = [[] for _ in model.outputs]
    first = model.inputs[0]["shape"][:1] if model.inputs and model.inputs[0]["shape"] else [1]
    b = first[0] if isinstance(first[0], int) and first[0] > 1 else 1  # a .tflite exported with --batch B
    t0 = time.perf_counter()
    for i in range(0, n, b):
        xs = []
        short = b - len(feed[0][i:i + b])
        for spec, a in zip(model.inputs, feed):
            x = a[i:i + b]
            if short:
                x = np.concatenate([x, np.repeat(x[-1:], short, axis=0)], axis=0)
            if list(x.shape) != spec["shape"]:
                raise RunnerError("bad_argument", "verification input %r has shape %s per sample, the model takes %s"
                                  % (spec["name"], list(x.shape), spec["shape"]))
            xs.append(_to_dtype(np, x, spec))
        try:
            ys = model.run(xs)
        except Exception as exc:  # noqa: BLE001
            raise RunnerError("inference_error", "%s failed on verification sample %d: %s" % (model.runtime, i, exc))
        for k, (spec, y) in enumerate(zip(model.outputs, ys)):
            y = _to_float(np, y, spec)
            outs[k].append(y[:b - short] if short else y)
    arrays = {"output_names": np.array([s["name"] for s in model.outputs], dtype=str)}
    for k, chunks in enumerate(outs):
        arrays["output_%d" % k] = np.concatenate(chunks, axis=0)
    part = outputs_file + ".part"
    with open(part, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(part, outputs_file)
    return {"samples": n, "outputs_file": outputs_file, "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------- main
MAX_SAMPLES = 20000  # raw latencies returned for the host's statistics (evenly thinned beyond)


def _load(np, path, args, profile_dir=None):
    ext = os.path.splitext(path)[1].lower()
    prefer = runtime_name(args.runtime)
    if ext == ".onnx":
        if prefer not in (None, "onnxruntime"):
            raise RunnerError("bad_argument", "runtime %s cannot run an .onnx model" % prefer,
                              "use runtime onnxruntime (or auto) for .onnx")
        return OnnxModel(np, path, args.threads, args.delegate, profile_dir=profile_dir)
    if prefer == "onnxruntime":
        raise RunnerError("bad_argument", "onnxruntime cannot run a .tflite model",
                          "use a TFLite runtime (ai_edge_litert, tflite_runtime) or auto for .tflite")
    return TFLiteModel(np, path, args.threads, args.delegate, prefer)


def restore_package(args):
    """--package: restore the artifact to MODEL with edgekit's unpacker (format.py, sent beside the runner) and
    check its sha256; returns what the row reports about the package."""
    import importlib.util

    path = args.unpacker or os.path.join(os.path.dirname(os.path.abspath(__file__)), "format.py")
    if not os.path.isfile(path):
        raise RunnerError("bad_argument", "the package unpacker %r is not on the device" % path,
                          "edgekit sends it beside the runner: rerun bench")
    spec = importlib.util.spec_from_file_location("edgekit_package_format", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(args.package, "rb") as fh:
        data = fh.read()
    base = None
    if args.base:
        with open(args.base, "rb") as fh:
            base = fh.read()
    t0 = time.perf_counter_ns()
    try:
        header, _ = mod.read_header(data, os.path.basename(args.package))
        out = mod.restore(data, base, os.path.basename(args.package))
    except mod.PackageError as exc:
        raise RunnerError("model_load_error" if exc.kind == "bad_package" else "bad_argument", exc.message, exc.hint)
    restore_ms = (time.perf_counter_ns() - t0) / 1e6
    tmp = "%s.part-%d" % (args.model, os.getpid())
    with open(tmp, "wb") as fh:
        fh.write(out)
    os.replace(tmp, args.model)
    return {"path": args.package, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "kind": header.get("kind"), "base": args.base, "restore_ms": restore_ms,
            "restored_sha256": mod.sha256(out), "restored_bytes": len(out)}


def benchmark(args):
    np = _import_numpy()
    package = restore_package(args) if args.package else None
    path = args.model
    if not os.path.isfile(path):
        raise RunnerError("bad_argument", "model file %r does not exist on the device" % path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".tflite", ".onnx"):
        raise RunnerError("bad_argument", "unsupported model file %r (expected .tflite or .onnx)" % path)
    runtime_name(args.runtime)  # reject a bad name before loading anything
    rss0 = _rss_now_bytes()
    t0 = time.perf_counter_ns()
    model = _load(np, path, args)
    init_ns = time.perf_counter_ns() - t0
    rss_init = _rss_now_bytes()
    arrays = make_inputs(np, model.inputs, args.input, args.seed)
    model.set_inputs(arrays)
    invoke = model.invoker()
    max_ns = int(args.max_seconds * 1e9)
    before = system_state()
    try:
        first = timed_loop(invoke, 1, max_ns)
        warm = first + timed_loop(invoke, max(args.warmup - 1, 0), max_ns) if args.warmup > 0 else []
        runs = timed_loop(invoke, args.runs, max_ns)
    except Exception as exc:  # noqa: BLE001
        raise RunnerError("inference_error", "%s failed to run the model: %s" % (model.runtime, exc))
    after = system_state()
    if args.warmup == 0:  # the first call is then the first measured run, as in benchmark_model
        runs = first + runs[:-1] if runs else first
    with open(path, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    peak = _rss_hwm_bytes()
    stride = max(1, -(-len(runs) // MAX_SAMPLES))
    doc = {
        "schema": SCHEMA, "tool": "runner",
        "runtime": {"name": model.runtime, "version": model.version},
        "model": {"path": path, "size_bytes": os.path.getsize(path), "sha256": sha, "format": ext[1:],
                  "inputs": [dict((k, s[k]) for k in ("name", "shape", "dtype", "scale", "zero_point"))
                             for s in model.inputs],
                  "outputs": [dict((k, s[k]) for k in ("name", "shape", "dtype", "scale", "zero_point"))
                              for s in model.outputs]},
        "config": {"threads": args.threads, "delegate": model.delegate, "warmup": args.warmup, "runs": args.runs,
                   "max_seconds": args.max_seconds, "input": args.input or "random", "seed": args.seed,
                   "runtime_requested": args.runtime or "auto"},
        "init_ms": init_ns / 1e6,
        "first_inference_ms": first[0] / 1e6,
        "warmup": {"count": len(warm), "mean_ms": (sum(warm) / len(warm) / 1e6) if warm else None},
        "latency_ms": summarize(np, runs),
        "samples_ms": [v / 1e6 for v in runs[::stride]],
        "samples_stride": stride,
        "memory": {"peak_rss_bytes": peak, "start_rss_bytes": rss0,
                   "init_delta_bytes": (rss_init - rss0) if rss0 is not None and rss_init is not None else None,
                   "overall_delta_bytes": (peak - rss0) if rss0 is not None else None},
        "system": {"before": before, "after": after},
        "machine": machine_info(),
    }
    if package is not None:
        doc["package"] = package
    if args.verify_inputs:
        doc["parity"] = replay(np, model, args.verify_inputs, args.outputs)
    if args.profile_ops:
        doc["op_profile"] = profile_ops(np, model, path, args, arrays)
    return doc


def interleaved(args):
    """Two models in one process, timed in alternating blocks (A B, B A, A B, ...) so that drift, heat and
    background load hit both alike; returns each model's statistics and raw runs."""
    np = _import_numpy()
    paths = [args.model, args.compare]
    for path in paths:
        if not os.path.isfile(path):
            raise RunnerError("bad_argument", "model file %r does not exist on the device" % path)
    models, invokes, inits = [], [], []
    for path in paths:
        t0 = time.perf_counter_ns()
        m = _load(np, path, args)
        inits.append((time.perf_counter_ns() - t0) / 1e6)
        m.set_inputs(make_inputs(np, m.inputs, args.input, args.seed))
        models.append(m)
        invokes.append(m.invoker())
    max_ns = int(args.max_seconds * 1e9)
    for inv in invokes:
        timed_loop(inv, max(args.warmup, 1), max_ns)
    rounds = max(1, min(args.rounds, args.runs))
    block = -(-args.runs // rounds)
    lat, blocks = [[], []], [[], []]  # blocks: per round, each model's runs in that round (paired by round)
    before = system_state()
    deadline = time.perf_counter_ns() + max_ns
    for r in range(rounds):
        for k in ((0, 1) if r % 2 == 0 else (1, 0)):
            runs = timed_loop(invokes[k], block, max_ns)
            lat[k] += runs
            blocks[k].append(runs)
        if time.perf_counter_ns() > deadline:
            break
    after = system_state()
    out = {"schema": SCHEMA, "tool": "runner", "mode": "interleaved", "rounds": r + 1, "block": block,
           "config": {"threads": args.threads, "warmup": args.warmup, "runs": args.runs, "seed": args.seed,
                      "runtime_requested": args.runtime or "auto"},
           "system": {"before": before, "after": after}, "machine": machine_info(), "models": []}
    for k, path in enumerate(paths):  # a .tflite and an .onnx run on different interpreters: each says its own
        with open(path, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        m = models[k]
        out["models"].append({"path": path, "sha256": sha, "runtime": {"name": m.runtime, "version": m.version},
                              "delegate": m.delegate, "init_ms": inits[k], "latency_ms": summarize(np, lat[k]),
                              "samples_ms": [v / 1e6 for v in lat[k][:MAX_SAMPLES]],
                              "block_runs": [len(b) for b in blocks[k]],
                              "block_p50_ms": [float(np.median(b)) / 1e6 for b in blocks[k]]})
    return out


def profile_ops(np, model, path, args, arrays):
    """A separate profiled pass (so profiling overhead never reaches the reported latencies)."""
    if not isinstance(model, OnnxModel):
        return model.op_profile(0)
    import tempfile

    cwd = os.getcwd()  # the session's run dir on the device (removed by edgekit, also on Ctrl-C/SIGTERM)
    d = tempfile.mkdtemp(prefix="edgekit-prof-", dir=cwd if os.access(cwd, os.W_OK) else None)
    try:
        prof = _load(np, path, args, profile_dir=d)
        prof.set_inputs(arrays)
        invoke = prof.invoker()
        n = max(1, min(args.runs, 50))
        timed_loop(invoke, n, int(args.max_seconds * 1e9))
        return prof.op_profile(n)
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?")
    p.add_argument("--probe", action="store_true", help="report machine, python, numpy and interpreters")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: the runtime's)")
    p.add_argument("--delegate", default="auto", help="auto|xnnpack|none|PATH.so (TFLite external delegate)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--max-seconds", type=float, default=150.0, help="stop each phase after this long")
    p.add_argument("--input", default=None, help=".npy (one input) or .npz (by input name) instead of random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runtime", default=None, help="interpreter to use: auto (default), ai_edge_litert, "
                   "tflite_runtime, tensorflow, onnxruntime")
    p.add_argument("--verify-inputs", default=None, help="edgekit .verify.npz whose inputs are replayed")
    p.add_argument("--outputs", default=None, help="where --verify-inputs writes the outputs (.npz)")
    p.add_argument("--profile-ops", action="store_true", help="per-op times where the runtime exposes them")
    p.add_argument("--compare", default=None, help="a second model timed interleaved with MODEL (A B B A ...)")
    p.add_argument("--rounds", type=int, default=10, help="alternations for --compare")
    p.add_argument("--package", default=None, help="an edgekit update package: restored to MODEL (sha256-checked) "
                   "before the timing")
    p.add_argument("--base", default=None, help="the deployed artifact a delta --package was made against")
    p.add_argument("--unpacker", default=None, help="edgekit's package format.py (default: beside this runner)")
    args = p.parse_args(argv)
    if args.package and args.compare:
        raise RunnerError("bad_argument", "--package restores one model: it does not combine with --compare")
    if bool(args.verify_inputs) != bool(args.outputs):
        raise RunnerError("bad_argument", "--verify-inputs and --outputs go together")
    if not args.probe and not args.model:
        raise RunnerError("bad_argument", "a MODEL path is required (or --probe)")
    for name in ("warmup", "runs"):
        if getattr(args, name) < 0:
            raise RunnerError("bad_argument", "--%s must be >= 0" % name)
    if args.runs < 1:
        raise RunnerError("bad_argument", "--runs must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise RunnerError("bad_argument", "--threads must be >= 1")
    cap = max(64, 8 * (os.cpu_count() or 1))  # the host bounds it too; this guards direct use on the device
    if args.threads is not None and args.threads > cap:
        raise RunnerError("bad_argument", "--threads %d is more than this device can use (%d cores); at most %d"
                          % (args.threads, os.cpu_count() or 1, cap))
    if args.max_seconds <= 0:
        raise RunnerError("bad_argument", "--max-seconds must be > 0")
    if args.rounds < 1:
        raise RunnerError("bad_argument", "--rounds must be >= 1")
    return args


def main(argv=None):
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        doc = probe() if args.probe else interleaved(args) if args.compare else benchmark(args)
        code = 0
    except RunnerError as exc:
        doc = {"schema": SCHEMA, "error": {"kind": exc.kind, "message": exc.message, "hint": exc.hint},
               "machine": machine_info()}
        code = EXIT.get(exc.kind, 1)
    except SystemExit as exc:  # argparse: usage on stderr
        doc = {"schema": SCHEMA, "error": {"kind": "bad_argument", "message": "invalid runner arguments",
                                           "hint": None}}
        code = 2 if exc.code else 0
        if not exc.code:
            return 0
    except Exception as exc:  # noqa: BLE001 - still one JSON document
        doc = {"schema": SCHEMA, "error": {"kind": "internal", "message": "%s: %s" % (type(exc).__name__, exc),
                                           "hint": None}}
        code = 1
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
