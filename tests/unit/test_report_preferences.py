"""`selfalign report` on preference data: violation rates per principle, revision rate, the judge's win rate of
revisions and its margins, from critique and judge outputs with known numbers."""

import random

import pytest



def test_margins_stay_bounded():
    from selfalign.report.page import LENGTHS, Margins

    m = Margins(random.Random(0))
    values = [i / 1000 for i in range(3 * LENGTHS)] + [None, float("nan"), "1.0"]
    for v in values:
        m.add(v)
    d = m.as_dict()
    assert len(m.sample.items) == LENGTHS  # the median's reservoir, not every margin
    assert (d["n"], d["no_margin"], d["median_exact"]) == (3 * LENGTHS, 3, False)
    assert d["mean"] == pytest.approx(sum(values[:-3]) / (3 * LENGTHS))
    assert sum(d["histogram"].values()) == 3 * LENGTHS and d["histogram"]["4+"] == 3 * LENGTHS - 4000
    assert d["median"] == pytest.approx(7.5, abs=0.5)
