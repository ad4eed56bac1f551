"""``compare`` under load (issue 20 item 2): the interval comes from the paired interleaved rounds, so a machine busy
with other work neither fakes a difference between byte-identical artifacts nor hides a real one.

The load: one busy process per core, started and stopped here and bounded in time either way."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest

from edgekit.devices import compare

pytestmark = pytest.mark.slow  # 20 compares of a real model under load, and an int8 export


@contextmanager
def busy_cores(seconds: float = 600.0):
    """One busy-looping process per core for at most ``seconds``, killed on exit."""
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.5)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def float_and_int8(tmp_path_factory, trained_mnv1):
    from edgekit.exporters import export

    out = tmp_path_factory.mktemp("load")
    f32 = export(trained_mnv1, quantize="none", formats="tflite", out=out, verify_samples=32)["tflite"].path
    i8 = export(trained_mnv1, quantize="int8", formats="tflite", out=out, calib_data="fashion-mnist",
                calib_samples=100, verify_samples=100)["tflite"].path
    twin = out / "copy_int8.tflite"
    shutil.copy(i8, twin)
    return {"float32": f32, "int8": i8, "twin": twin}


def _interleaved_ratio(a, b, blocks: int = 20, block: int = 25) -> float:
    """An independent timing: both interpreters in this process, timed in alternating blocks of ``block`` invokes
    (warm, as compare's rounds are), ratio of the medians."""
    from ai_edge_litert.interpreter import Interpreter

    its = []
    for path in (a, b):
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        its.append(it)
    t = [[], []]
    for i in range(blocks):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            for _ in range(block):
                t0 = time.perf_counter_ns()
                its[k].invoke()
                t[k].append(time.perf_counter_ns() - t0)
    return float(np.median(t[0]) / np.median(t[1]))


def test_compare_under_load_byte_identical_no_difference_and_float_vs_int8_still_found(float_and_int8):
    pytest.importorskip("ai_edge_litert")
    verdicts = []
    with busy_cores():
        for i in range(20):
            c = compare([float_and_int8["int8"], float_and_int8["twin"]], "local", runs=200, rounds=20, warmup=3,
                        threads=1, seed=i)
            verdicts.append((c.verdict, c.ci))
        same = sum(v.startswith("no significant difference") for v, _ in verdicts)
        print("\n".join(f"{v} {ci}" for v, ci in verdicts if not v.startswith("no significant")))
        assert same >= 18, verdicts
        c = compare([float_and_int8["float32"], float_and_int8["int8"]], "local", runs=100, rounds=10, warmup=5,
                    threads=1)
        independent = _interleaved_ratio(float_and_int8["float32"], float_and_int8["int8"])
    print(f"under load: {same}/20 'no significant difference' for byte-identical int8 copies; float32/int8 ratio "
          f"{c.ratio:.3f} (95% CI {c.ci[0]:.3f}-{c.ci[1]:.3f}) vs independent interleaved {independent:.3f}")
    assert not c.verdict.startswith("no significant difference"), (c.verdict, c.ci)
    assert not (c.ci[0] <= 1 <= c.ci[1])
    assert abs(c.ratio / independent - 1) <= 0.15, (c.ratio, c.ci, independent)
