"""Ratios that hold on a shared, noisy machine: app and raw run in interleaved pairs,
and what is reported is the median of the per-pair ratios with their spread.

A best-of-N on each side pairs two lucky moments that may be minutes apart; the ratio
within one pair compares two runs that met the same load, and the median of several
pairs shrugs off the one pair that met a burst.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

MIN_PAIRS = 5  # fewer pairs give no spread worth the name


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    pairs: int

    def as_dict(self) -> dict:
        return {"median": round(self.median, 4), "min": round(self.low, 4),
                "max": round(self.high, 4), "pairs": self.pairs}

    def __str__(self) -> str:
        return f"{self.median:.3f} ({self.low:.3f}–{self.high:.3f}, {self.pairs} pairs)"


def ratios(apps: list[float], raws: list[float]) -> Spread:
    """The per-pair ratios ``apps[i] / raws[i]`` (pairs whose raw side is 0 are left out)."""
    values = [a / r for a, r in zip(apps, raws) if r]
    if not values:
        return Spread(0.0, 0.0, 0.0, 0)
    return Spread(statistics.median(values), min(values), max(values), len(values))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
