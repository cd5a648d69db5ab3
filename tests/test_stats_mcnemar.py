"""McNemar's tests against statistics.md, statsmodels and scipy on random tables."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, binomtest
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

from busgan.errors import BusganError
from busgan.stats import mcnemar, mcnemar_table


def test_agresti_reference():
    r = mcnemar_table([[794, 150], [86, 570]])
    assert (r.b, r.c, r.statistic, r.n, r.n_discordant) == (150, 86, 86, 1600, 236)
    assert r.chi2 == pytest.approx(17.3559, rel=1e-5)
    assert r.chi2_p == pytest.approx(3.0993e-05, rel=1e-4)
    assert r.chi2_cc == pytest.approx(16.8178, rel=1e-5)
    assert r.chi2_cc_p == pytest.approx(4.1146e-05, rel=1e-4)
    assert r.exact_p == pytest.approx(3.7159e-05, rel=1e-4)
    assert r.mid_p == pytest.approx(2.8934e-05, rel=1e-4)


def test_small_reference():
    r = mcnemar_table([[0, 10], [3, 0]])
    assert r.exact_p == pytest.approx(0.092285, rel=1e-5)
    assert r.mid_p == pytest.approx(0.057373, rel=1e-5)
    assert r.chi2_cc == pytest.approx(2.7692, rel=1e-4)
    assert r.chi2_cc_p == pytest.approx(0.09609, rel=1e-4)


def test_random_tables_agree_with_statsmodels_and_scipy():
    rng = np.random.default_rng(0)
    for _ in range(80):
        t = rng.integers(0, 40, size=(2, 2))
        if t[0, 1] + t[1, 0] == 0:
            continue
        r = mcnemar_table(t)
        b, c = int(t[0, 1]), int(t[1, 0])
        ex = sm_mcnemar(t, exact=True)
        assert r.statistic == ex.statistic
        assert r.exact_p == pytest.approx(ex.pvalue, rel=1e-12)
        assert r.exact_p == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
        plain = sm_mcnemar(t, exact=False, correction=False)
        corr = sm_mcnemar(t, exact=False, correction=True)
        assert (r.chi2, r.chi2_p) == pytest.approx((plain.statistic, plain.pvalue), rel=1e-12)
        assert (r.chi2_cc, r.chi2_cc_p) == pytest.approx((corr.statistic, corr.pvalue), rel=1e-12)
        # mid-p: both tails strictly beyond the observed count, plus half of each observed point
        k, nd = min(b, c), b + c
        tails = binom.cdf(k - 1, nd, 0.5) + binom.sf(nd - k, nd, 0.5)
        points = 0.5 * (binom.pmf(k, nd, 0.5) + binom.pmf(nd - k, nd, 0.5))
        assert r.mid_p == pytest.approx(min(1.0, tails + points), rel=1e-9)
        assert 0.0 <= r.mid_p <= r.exact_p <= 1.0


def test_no_discordant_pairs():
    r = mcnemar_table([[30, 0], [0, 5]])
    assert (r.b, r.c, r.exact_p, r.mid_p, r.chi2, r.chi2_p, r.chi2_cc, r.chi2_cc_p) == \
        (0, 0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0)


def test_equal_discordant_counts():
    r = mcnemar_table([[3, 6], [6, 3]])
    assert (r.exact_p, r.mid_p, r.chi2, r.chi2_p) == (1.0, 1.0, 0.0, 1.0)
    assert r.chi2_cc == pytest.approx(1 / 12)  # as statsmodels and R define the corrected form


def test_orientation_from_correct_vectors():
    a = np.array([1, 1, 1, 0, 0, 1], bool)  # model A right
    b = np.array([1, 0, 0, 1, 0, 1], bool)  # model B right
    r = mcnemar(a, b)
    assert r.table == [[2, 2], [1, 1]]
    assert (r.b, r.c) == (2, 1)
    swapped = mcnemar(b, a)
    assert (swapped.b, swapped.c, swapped.exact_p) == (1, 2, r.exact_p)


@pytest.mark.parametrize("table", [[[1, 2], [3]], [[1, -2], [3, 4]], [[1, 2.5], [3, 4]],
                                   [[1, 2, 3], [4, 5, 6]], [[1, np.nan], [3, 4]]])
def test_bad_tables_are_refused(table):
    with pytest.raises(BusganError, match="2x2 table"):
        mcnemar_table(np.array(table, dtype=object) if len(table[-1]) == 1 else table)


def test_bad_vectors_are_refused():
    with pytest.raises(BusganError, match="same cases"):
        mcnemar([True, False], [True])
    with pytest.raises(BusganError, match="booleans"):
        mcnemar([0, 2], [1, 1])
