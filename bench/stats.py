"""Percentiles as the benchmarks and the demo's report give them: the inclusive method, so the
p99 of a few values stays within them, and a single value is its own every percentile."""

import statistics


def quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def figures(values: list[float]) -> dict:
    """p50, p99 and mean in ms (two places) and n; None for each when there is nothing."""
    if not values:
        return {"p50": None, "p99": None, "mean": None, "n": 0}
    return {
        "p50": round(quantile(values, 50), 2),
        "p99": round(quantile(values, 99), 2),
        "mean": round(statistics.fmean(values), 2),
        "n": len(values),
    }
