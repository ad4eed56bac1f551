"""edgekit.verification: one rule for export, bench --verify, doctor and sweep (numbers, top-1 over confident samples,
the paired accuracy interval), on synthetic outputs with known properties (no TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit import verification as V


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _undertrained(n: int, seed: int = 0, tie_share: float = 0.6):
    """Probabilities of a weak 10-class model: ``tie_share`` of the samples have their top two scores nearly tied;
    an 'int8' copy adds quantization-sized noise, which flips the top-1 of many near-ties but of no sure sample.
    Labels: the true class is one of the tied two (or the sure top-1), so flips move accuracy both ways alike."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 0.3, (n, 10))
    top = rng.integers(0, 10, n)
    second = (top + 1 + rng.integers(0, 9, n)) % 10
    tied = rng.random(n) < tie_share
    z[np.arange(n), top] = np.where(tied, 2.0, 3.0)
    z[np.arange(n), second] = np.where(tied, 2.0 - rng.uniform(0, 0.002, n), z[np.arange(n), second])
    ref = _softmax(z).astype(np.float32)
    out = np.clip(ref + rng.normal(0, 0.006, ref.shape), 0, 1).astype(np.float32)
    labels = np.where(rng.random(n) < 0.5, top, np.where(tied, second, (top + 5) % 10))
    return ref, out, labels


def test_binomial_and_paired_intervals_are_exact_and_never_empty():
    lo, hi = V.binom_interval(3, 10)
    assert lo == pytest.approx(0.066739, abs=1e-5) and hi == pytest.approx(0.652453, abs=1e-5)  # Clopper-Pearson
    assert V.binom_interval(0, 10) == (0.0, pytest.approx(0.308497, abs=1e-5))
    d, lo, hi = V.paired_drop_interval(0, 0, 100)  # 100 agreeing samples still leave a few points either way
    assert d == 0 and lo == -hi and 0.03 < hi < 0.05
    d, lo, hi = V.paired_drop_interval(60, 10, 1000)  # 5 points worse, clearly
    assert d == pytest.approx(0.05) and 0.02 < lo < 0.05 < hi < 0.08
    assert V.samples_needed(62, 60, 400, 0.02) > 400 and V.samples_needed(0, 0, 10_000, 0.02) == 10_000


def test_low_top1_agreement_from_near_ties_passes_on_accuracy_with_enough_samples():
    """The issue's quick sweep: an under-trained int8 model agrees with Keras on ~70 % of top-1 labels, its accuracy
    is the same. Verified on 10,000 samples it passes; on 1,000 it cannot tell, and says how many would."""
    ref, out, labels = _undertrained(10_000)
    v = V.verify_outputs([ref], [out], precision="int8", labels=labels, num_classes=10, classifier=[True])
    assert v.top1_agreement_all < V.TOLERANCES["int8"].agreement  # the old rule failed it
    assert v.status == "passed", (v.failures, v.note)
    assert v.top1_agreement == 1.0 and 3000 < v.confident_samples < 5000  # the sure samples never flip
    assert abs(v.accuracy_drop) < 0.01 and v.accuracy_drop_ci[1] <= V.TOLERANCES["int8"].max_drop
    assert "near-ties" in v.note and v.sqnr_db >= 10
    small = V.verify_outputs([ref[:1000]], [out[:1000]], precision="int8", labels=labels[:1000], num_classes=10)
    assert small.status == "inconclusive" and not small.failures
    assert 1000 < small.samples_needed <= 20_000 and f"about {small.samples_needed} samples" in small.note


def test_without_labels_near_tie_flips_pass_on_confident_samples_or_say_how_many_more():
    ref, out, _ = _undertrained(2000)
    v = V.verify_outputs([ref], [out], precision="int8")
    assert v.status == "passed" and v.confident_samples >= V.MIN_CONFIDENT and v.top1_agreement == 1.0
    ref, out, _ = _undertrained(200, tie_share=0.95)
    v = V.verify_outputs([ref], [out], precision="int8")
    assert v.status == "inconclusive" and v.confident_samples < V.MIN_CONFIDENT and v.samples_needed > 200


def test_a_broken_artifact_still_fails():
    ref, out, labels = _undertrained(2000)
    other, _, _ = _undertrained(2000, seed=7)  # another model's outputs (weights of another model)
    v = V.verify_outputs([ref], [other], precision="int8", labels=labels, num_classes=10)
    assert v.status == "failed" and any("SQNR" in f for f in v.failures)
    assert any("where the float model is sure" in f for f in v.failures)
    assert any("measurably more than the 2 points" in f for f in v.failures)
    # two outputs swapped: same shapes, paired by name, each carries the other's values
    box = np.random.default_rng(1).normal(0, 1, (2000, 10)).astype(np.float32)
    v = V.verify_outputs([ref, box], [box, ref], precision="float16", ref_names=["prob", "box"], art_keys=["prob", "box"])
    assert v.status == "failed" and {c.status for c in v.outputs} == {"failed"}


def test_measurably_worse_accuracy_fails_even_when_top1_mostly_agrees():
    ref, _, labels = _undertrained(5000, tie_share=0.0)
    out = ref.copy()
    right = np.flatnonzero(ref.argmax(1) == labels)[:250]  # 5 points of accuracy lost on sure samples
    out[right] = np.roll(out[right], 1, axis=1)
    v = V.verify_outputs([ref], [out], precision="int8", labels=labels, num_classes=10)
    assert v.top1_agreement_all >= 0.9 and v.status == "failed"
    assert v.accuracy_drop == pytest.approx(0.05) and v.accuracy_drop_ci[0] > 0.02


def test_one_sqnr_one_result_type_for_parity_and_the_doctor(tmp_path):
    from edgekit.devices import parity
    from edgekit._verify_data import read, write
    from edgekit.doctor import stats
    from edgekit.exporters import verify

    assert stats.sqnr is V.sqnr and stats.SQNR_CAP_DB is V.SQNR_CAP_DB and parity.Parity is V.Verification
    assert not hasattr(verify, "sqnr_db") and not hasattr(verify, "THRESHOLDS")
    ref, out, labels = _undertrained(3000)
    f = tmp_path / "m.tflite.verify.npz"
    write(f, inputs=[np.zeros((3000, 2), np.float32)], reference=[ref], host=[ref], labels=labels, input_names=["x"],
          output_names=["Identity"], output_keys=["prob"], precision="int8", num_classes=10, classifier=[True])
    p = parity.evaluate(read(f), ["Identity"], [out], precision="int8")
    v = V.verify_outputs([ref], [out], precision="int8", labels=labels, num_classes=10, classifier=[True])
    assert isinstance(p, V.Verification) and p.status == v.status == "passed"
    assert p.accuracy_drop == v.accuracy_drop and p.outputs[0].host_sqnr_db == pytest.approx(v.sqnr_db)
    assert p.to_dict()["schema"] == V.SCHEMA and p.outputs[0].name == "prob"
