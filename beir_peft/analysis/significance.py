"""Paired significance of per-query score differences between two systems on the same queries.

The DDR paper (Zhan et al. 2022, section 5) marks differences by a two-tailed paired t-test over
queries; :func:`paired_t_test` does the same with ``scipy.stats.ttest_rel``. A query that one
system did not return at all scores 0 for it (as trec_eval's ``-c`` would count it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class PairedTest:
    """``mean_a``/``mean_b`` over ``queries``; ``delta = mean_b - mean_a``; two-tailed ``p_value``."""

    queries: int
    mean_a: float
    mean_b: float
    delta: float
    t_statistic: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_t_test(
    scores_a: Mapping[str, float], scores_b: Mapping[str, float], queries: Iterable[str]
) -> PairedTest:
    """Two-tailed paired t-test of ``scores_b`` against ``scores_a`` (``{query_id: score}``) over ``queries``.

    Missing queries score 0. When every difference is 0 the test is undefined; it is reported as
    ``t = 0, p = 1`` (no evidence of a difference) instead of scipy's NaN.
    Raises :class:`ConfigError` with fewer than two queries.
    """
    from scipy.stats import ttest_rel

    ids = list(dict.fromkeys(queries))
    if len(ids) < 2:
        raise ConfigError(f"a paired t-test needs at least 2 queries, got {len(ids)}")
    a = [float(scores_a.get(q, 0.0)) for q in ids]
    b = [float(scores_b.get(q, 0.0)) for q in ids]
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    if all(x == y for x, y in zip(a, b, strict=True)):
        return PairedTest(len(ids), mean_a, mean_b, 0.0, 0.0, 1.0)
    with warnings.catch_warnings():  # near-constant differences: scipy warns, the NaN is handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ttest_rel(b, a)
    t, p = float(result.statistic), float(result.pvalue)
    if math.isnan(p):  # constant non-zero difference: the test's variance is 0
        t, p = math.copysign(math.inf, mean_b - mean_a), 0.0
    return PairedTest(len(ids), mean_a, mean_b, mean_b - mean_a, t, p)


__all__ = ["PairedTest", "paired_t_test"]
