"""Chance level (edgekit._chance): the exact one-sided binomial test every training/scoring command uses."""
from __future__ import annotations

import subprocess
import sys
import warnings
from math import comb

import numpy as np
import pytest

from edgekit._chance import ALPHA, binomial_sf, chance_level, check, min_correct, warn_if_at_chance
from edgekit.errors import EdgekitWarning


@pytest.mark.parametrize("n,p,k", [(50, 0.3, 20), (200, 0.1, 30), (20, 0.5, 15), (1, 0.5, 1), (30, 0.1, 0),
                                   (30, 0.1, 31)])
def test_binomial_tail_is_exact(n, p, k):
    exact = sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1))
    assert binomial_sf(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)


def test_chance_is_the_largest_class_share_of_the_scored_labels():
    assert chance_level([0, 1, 1, 2]) == (0.5, 1)
    assert chance_level(np.repeat(np.arange(10), 100)) == (0.1, 0)
    assert chance_level([]) == (0.0, None)


def test_threshold_on_1000_balanced_samples():
    y = np.repeat(np.arange(10), 100)
    # 124 correct of 1000: P(X >= 124) = 0.0079 <= 0.01; 123: 0.0104 > 0.01
    assert min_correct(1000, 0.1, ALPHA) == 124
    below, above = check(0.123, y), check(0.124, y)
    assert not below.above_chance and above.above_chance and below.min_accuracy == pytest.approx(0.124)
    assert "NOT significantly above chance" in below.statement() and "12.40%" in below.statement()
    assert "above chance" in above.statement() and "NOT" not in above.statement()
    # the sweep: 8.3-11.2 % on 1000 test samples of 10 classes are all at chance
    assert not any(check(a, y).above_chance for a in (0.083, 0.098, 0.112))


def test_imbalanced_labels_raise_the_bar():
    y = np.array([0] * 900 + [1] * 100)
    c = check(0.9, y)   # always answering class 0 scores 90 %: that is chance here, not skill
    assert c.chance == 0.9 and c.majority_class == 0 and not c.above_chance
    assert check(0.95, y).above_chance


def test_too_few_samples_cannot_be_above_chance():
    c = check(1.0, [0, 1])
    assert not c.above_chance and c.min_accuracy is None and "too few" in c.statement()


def test_warning_names_the_remedy_only_when_at_chance():
    y = np.repeat(np.arange(10), 100)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        warn_if_at_chance(check(0.5, y), "test accuracy")
        assert not w
        warn_if_at_chance(check(0.1, y), "test accuracy")
    (msg,) = [str(x.message) for x in w if issubclass(x.category, EdgekitWarning)]
    assert "NOT significantly above chance" in msg and "--epochs" in msg and "--lr" in msg


def test_the_chance_module_does_not_import_tensorflow():
    code = "import sys, edgekit._chance, edgekit.sweep.analysis; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"
