"""The statistics of a study: intervals over seeds, paired differences, tests and their multiplicity.

Every variant of a study runs with the same seeds as the baseline (same initialisation or trunk, same data
order), so a variant is compared with the baseline seed by seed: the paired difference removes the spread the
two share. Intervals are Student-t 95% intervals; a comparison's p-value is the paired t-test's; with several
comparisons in one report, Holm's step-down adjustment keeps the chance of any false finding at 5%.
"""

import math
import statistics

from scipy import stats

LEVEL = 0.95


def mean_ci(values: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% confidence interval; with one value the interval is that value."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, [m, m]
    half = float(stats.t.ppf((1 + LEVEL) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))
    return m, [m - half, m + half]


def paired(values: list[float], baseline: list[float]) -> dict:
    """The paired difference values - baseline: mean, 95% interval, the paired t-test's p-value (None with fewer
    than two pairs, 1 where every difference is 0)."""
    differences = [a - b for a, b in zip(values, baseline)]
    mean, ci = mean_ci(differences)
    p = None
    if len(differences) > 1:
        if all(d == differences[0] for d in differences):  # no spread: t is undefined
            p = 1.0 if differences[0] == 0 else 0.0
        else:
            p = float(stats.ttest_rel(values, baseline).pvalue)
    return {"mean": mean, "ci95": ci, "pairs": len(differences), "p": p,
            "excludes_zero": bool(len(differences) > 1 and (ci[0] > 0 or ci[1] < 0))}


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values of a family of tests (name -> p)."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[name]))
        adjusted[name] = running
    return adjusted


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """Linear interpolation of (x, y) points at x; beyond the last point, the last y (the curve has ended);
    before the first point, None (nothing was measured that early)."""
    points = sorted(points)
    if not points or x < points[0][0]:
        return None
    if x == points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return points[-1][1]
