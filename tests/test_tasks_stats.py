"""Rank statistics and cosines used by the evaluations, on cases with known answers."""

import itertools
import math

import numpy as np
import pytest

from spacy_elmo.tasks.stats import cosine_rows, finite_or_none, pearson, rankdata, spearman


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert rankdata([3, 1, 2]).tolist() == [3.0, 1.0, 2.0]
    assert rankdata([5, 5, 5]).tolist() == [2.0, 2.0, 2.0]
    assert rankdata([]).tolist() == []


def test_rankdata_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=40).astype(float)  # many ties
    # Brute force: rank = (#smaller) + (#equal + 1) / 2
    expected = [(x < v).sum() + ((x == v).sum() + 1) / 2 for v in x]
    assert np.allclose(rankdata(x), expected)


def test_spearman_of_known_rankings():
    assert spearman([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # Monotone but non-linear: Spearman 1 where Pearson is not.
    x = [1, 2, 3, 4, 5]
    y = [1, 4, 9, 100, 1000]
    assert spearman(x, y) == pytest.approx(1.0)
    assert pearson(x, y) < 0.95
    # One swapped pair of 5: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 120 = 0.9
    assert spearman([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.9)


def test_spearman_with_ties_is_pearson_of_average_ranks():
    x = [1, 2, 2, 3]
    y = [1, 3, 2, 4]
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]; Pearson of those, by hand:
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 3, 2, 4])
    dx, dy = rx - rx.mean(), ry - ry.mean()
    expected = (dx @ dy) / math.sqrt((dx @ dx) * (dy @ dy))
    assert spearman(x, y) == pytest.approx(expected)
    assert expected == pytest.approx(0.9486832980505138)


def test_correlation_of_a_constant_is_undefined():
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert finite_or_none(spearman([1, 1, 1], [1, 2, 3])) is None
    assert finite_or_none(0.5) == 0.5


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [2.0, 2.0], [1.0, 0.0], [-1.0, 0.0]])
    assert cosine_rows(a, b).tolist() == pytest.approx([0.0, 1.0, 0.0, -1.0])


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_spearman_matches_the_textbook_formula_without_ties(perm):
    x = np.arange(4)
    y = np.array(perm)
    d2 = ((x - y) ** 2).sum()
    assert spearman(x, y) == pytest.approx(1 - 6 * d2 / (4 * (16 - 1)))


def test_mcnemar_exact_matches_the_binomial_test():
    from spacy_elmo.tasks.stats import mcnemar_exact

    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # all 5 discordant items one way
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)  # C(10,0) + C(10,1) = 11
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError, match="non-negative"):
        mcnemar_exact(-1, 3)


def test_paired_comparison_of_two_classifiers():
    from spacy_elmo.tasks.textcat import compare_classifiers

    gold = ["pos", "neg"] * 50
    a = list(gold)
    b = list(gold)
    for i in range(20):  # B misses 20 items A gets right; A misses 2 that B gets right
        b[i] = "neg" if gold[i] == "pos" else "pos"
    for i in range(20, 22):
        a[i] = "neg" if gold[i] == "pos" else "pos"
    result = compare_classifiers(gold, a, b)
    assert (result["accuracy_a"], result["accuracy_b"]) == (0.98, 0.80)
    assert (result["only_a_right"], result["only_b_right"]) == (20, 2)
    assert result["mcnemar_p"] < 0.001
    low, high = result["difference_ci95"]
    assert low < -0.18 < high < 0  # around B - A = -0.18, excluding 0
    with pytest.raises(ValueError, match="same, non-zero number"):
        compare_classifiers(gold, a[:-1], b)
