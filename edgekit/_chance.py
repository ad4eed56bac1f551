"""Chance level: is a measured accuracy significantly above what always answering the most common class scores?

The chance accuracy of labelled data is the largest class share of the labels that were scored (a model that
learned nothing and answers one class reaches it at best; on 10 balanced classes it is 10 %). A model is *above
chance* when a one-sided exact binomial test rejects "its accuracy is the chance accuracy" at :data:`ALPHA`:
``P(X >= correct) <= alpha`` for ``X ~ Binomial(samples, chance)``. On 1,000 samples of 10 balanced classes that
needs 12.4 % or more; on 10,000, 10.71 %.

One function (:func:`check`) used by every command that trains or scores; pure Python + numpy, no TensorFlow.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._jsonable import JsonMixin
from .errors import EdgekitWarning

#: significance level of the one-sided exact binomial test
ALPHA = 0.01
#: what to change when a training learned nothing (appended to warnings and statements)
ADVICE = "train longer (--epochs), on more samples (--limit), or with a higher learning rate (--lr)"


@dataclass
class ChanceCheck(JsonMixin):
    """An accuracy measured on ``samples`` labelled samples against their chance accuracy."""

    accuracy: float
    samples: int
    chance: float            # the largest class share of the scored labels
    majority_class: int | None
    p_value: float           # P(X >= correct), X ~ Binomial(samples, chance): one-sided exact
    alpha: float
    above_chance: bool
    #: the lowest accuracy that is significantly above chance on these samples (None: none is, too few samples)
    min_accuracy: float | None

    def statement(self, what: str = "accuracy") -> str:
        """One line saying whether ``what`` is above chance, with the figures."""
        figures = (f"{100 * self.accuracy:.2f}% on {self.samples} samples; chance {100 * self.chance:.2f}% (the "
                   f"largest class share), p = {self.p_value:.2g}")
        if self.above_chance:
            return f"{what} is above chance: {figures}"
        if self.min_accuracy is None:
            return (f"{what} cannot be told from chance: {figures}; {self.samples} test samples are too few for "
                    f"any accuracy to be significant (one-sided binomial test, alpha {self.alpha:g})")
        return (f"{what} is NOT significantly above chance: {figures}; above chance needs >= "
                f"{100 * self.min_accuracy:.2f}% (one-sided binomial test, alpha {self.alpha:g})")


def chance_level(labels: Sequence[int] | np.ndarray) -> tuple[float, int | None]:
    """(largest class share, that class) of ``labels``; (0.0, None) without labels."""
    y = np.asarray(labels).reshape(-1)
    if y.size == 0:
        return 0.0, None
    values, counts = np.unique(y, return_counts=True)
    i = int(np.argmax(counts))
    return float(counts[i] / y.size), int(values[i])


def _log_tail(n: int, p: float) -> np.ndarray:
    """``log P(X >= k)`` for k = 0..n, ``X ~ Binomial(n, p)`` with 0 < p < 1 (exact: the pmf by its recurrence in
    log space, tails by a reversed log-add)."""
    i = np.arange(n, dtype=np.float64)
    steps = np.log(n - i) - np.log(i + 1) + math.log(p) - math.log1p(-p)
    log_pmf = n * math.log1p(-p) + np.concatenate([[0.0], np.cumsum(steps)])
    return np.minimum(0.0, np.logaddexp.accumulate(log_pmf[::-1])[::-1])


def binomial_sf(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)``, exact."""
    if k <= 0 or p >= 1.0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    return float(math.exp(_log_tail(n, p)[k]))


def min_correct(n: int, p: float, alpha: float = ALPHA) -> int:
    """The fewest correct answers out of ``n`` that are significantly above chance ``p`` (n + 1: none is)."""
    if p <= 0.0:
        return 1
    if p >= 1.0:
        return n + 1
    below = np.nonzero(_log_tail(n, p) <= math.log(alpha))[0]
    return int(below[0]) if below.size else n + 1


def check(accuracy: float, labels: Sequence[int] | np.ndarray | None = None, *, samples: int | None = None,
          chance: float | None = None, alpha: float = ALPHA) -> ChanceCheck:
    """``accuracy`` on the scored ``labels`` (or on ``samples`` samples whose ``chance`` accuracy is known) tested
    against chance; see the module docstring."""
    majority = None
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        chance, majority = chance_level(y)
        samples = int(y.size)
    if samples is None or chance is None:
        raise ValueError("check() needs the scored labels, or samples and chance")
    samples = int(samples)
    correct = int(round(float(accuracy) * samples))
    p_value = binomial_sf(correct, samples, chance) if samples else 1.0
    need = min_correct(samples, chance, alpha) if samples else 1
    return ChanceCheck(float(accuracy), samples, float(chance), majority, float(p_value), alpha,
                       bool(samples and p_value <= alpha), need / samples if samples and need <= samples else None)


def warn_if_at_chance(result: ChanceCheck | None, what: str, *, advice: str = ADVICE, stacklevel: int = 3,
                      undecidable: bool = True) -> None:
    """An :class:`~edgekit.errors.EdgekitWarning` when ``result`` is not above chance (nothing otherwise);
    ``undecidable=False``: not when the samples are too few for any accuracy to be significant."""
    if result is None or result.above_chance or (result.min_accuracy is None and not undecidable):
        return
    if result.min_accuracy is None:
        msg = f"{result.statement(what)}; score it on more labelled samples"
    else:
        msg = f"{result.statement(what)}: the model learned nothing measurable; {advice}"
    warnings.warn(msg, EdgekitWarning, stacklevel=stacklevel)
