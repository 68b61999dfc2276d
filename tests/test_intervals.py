"""Wilson intervals against statsmodels-free reference values (Newcombe 1998, table I)."""

from __future__ import annotations

import pytest

from bot.core.intervals import wilson


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (81, 263, 0.2553, 0.3662),  # Newcombe's example 1
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_published_values(k, n, lo, hi):
    est = wilson(k, n)
    assert est.lower == pytest.approx(lo, abs=1e-4)
    assert est.upper == pytest.approx(hi, abs=1e-4)


def test_text_names_the_sample_size_and_interval():
    assert wilson(2, 2).text() == "100.0% (95% CI 34.2%–100.0%, n=2)"
    assert wilson(0, 0).text() == "n/a (n=0)"
