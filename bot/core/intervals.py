"""Honest rates: every accuracy or share labelbot shows carries its sample size and a 95% interval.

Wilson score intervals (not the normal approximation, which collapses to a zero-width interval at
0% or 100% and is far off for the small held-out sets a young campaign has). `Estimate.text()` is
the one wording used everywhere a rate is printed: CLI, channel messages, dashboard, charts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Estimate:
    """`successes` out of `n`, with a Wilson interval [lower, upper] at `confidence`."""

    successes: float
    n: int
    lower: float
    upper: float
    confidence: float = 0.95

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None

    def text(self, digits: int = 1) -> str:
        """e.g. "93.1% (95% CI 88.0%–96.2%, n=240)", or "n/a (n=0)"."""
        if not self.n:
            return "n/a (n=0)"
        pct = f"{{:.{digits}f}}%"
        return (f"{pct.format(100 * self.value)} ({round(100 * self.confidence)}% CI "
                f"{pct.format(100 * self.lower)}–{pct.format(100 * self.upper)}, n={self.n:,})")

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "successes": self.successes, "n": self.n, "lower": self.lower,
                "upper": self.upper, "confidence": self.confidence}


def wilson(successes: float, n: int, confidence: float = 0.95) -> Estimate:
    """The Wilson score interval of a binomial proportion (successes may be fractional, e.g. ties as 0.5)."""
    if n <= 0:
        return Estimate(0.0, 0, 0.0, 1.0, confidence)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, {n}], got {successes}")
    z = Z95 if confidence == 0.95 else _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(successes, n, max(0.0, centre - half), min(1.0, centre + half), confidence)


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)
