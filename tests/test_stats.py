"""reports.stats on hand-made data: known p-values, rankings and effect sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from reports import stats


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adjusted = stats.holm([math.nan, 0.02])
    assert math.isnan(adjusted[0]) and adjusted[1] == pytest.approx(0.02)


def test_a12_by_hand():
    assert stats.a12(np.array([1, 2, 3]), np.array([1, 2, 3])) == 0.5
    assert stats.a12(np.array([4, 5]), np.array([1, 2])) == 1.0
    # (2>1) + (3>1) + (3=3)/2 over 4 pairs
    assert stats.a12(np.array([2, 3]), np.array([1, 3])) == pytest.approx(0.625)
    assert stats.a12_magnitude(0.625) == "small"
    assert stats.a12_magnitude(0.2) == "large" and stats.a12_magnitude(0.52) == "negligible"


def test_wilcoxon_matches_exact_distribution():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = x - np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # six positive distinct differences
    statistic, p = stats.wilcoxon(x, y)
    assert p == pytest.approx(2 / 2**6) == pytest.approx(stats.smallest_wilcoxon_p(6))
    assert statistic == 0.0
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=12), rng.normal(size=12)
    assert stats.wilcoxon(a, b)[1] == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert stats.wilcoxon(x, x) == (0.0, 1.0)


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demsar (2006), Table 5(a): q_0.05 = 2.343 (k=3), 2.728 (k=5), 3.164 (k=10)
    for k, q in ((3, 2.343), (5, 2.728), (10, 3.164)):
        cd = stats.nemenyi_cd(k, 30)
        assert cd == pytest.approx(q * math.sqrt(k * (k + 1) / 180), abs=2e-3)


def test_mean_ranks_by_hand():
    blocks = pd.DataFrame({"a": [3.0, 3.0, 1.0], "b": [2.0, 1.0, 2.0], "c": [1.0, 2.0, 2.0]})
    ranks = stats.mean_ranks(blocks)  # a: 1, 1, 3; b: 2, 3, 1.5; c: 3, 2, 1.5
    assert ranks.to_dict() == pytest.approx({"a": 5 / 3, "b": 6.5 / 3, "c": 6.5 / 3})
    assert stats.mean_ranks(blocks, maximise=False)["a"] == pytest.approx(7 / 3)


def _blocks(repeats: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.01, size=repeats)  # shared by the repeat: paired
    return pd.DataFrame({
        "grid": 0.70 + noise + rng.normal(0, 0.002, repeats),
        "random": 0.75 + noise + rng.normal(0, 0.002, repeats),
        "tpe": 0.75 + noise + rng.normal(0, 0.002, repeats),
    }, index=pd.RangeIndex(repeats, name="repeat"))


def test_verdict_separates_a_worse_sampler_and_not_two_equal_ones():
    blocks = _blocks(12)
    verdict = stats.compare_paired(blocks)
    expected = sps.friedmanchisquare(*(blocks[c] for c in blocks.columns))
    assert verdict.friedman_p == pytest.approx(expected.pvalue) and verdict.friedman_p < 0.05
    pairs = {frozenset((p.better, p.worse)): p for p in verdict.pairs}
    tpe_grid = pairs[frozenset(("tpe", "grid"))]
    assert tpe_grid.better == "tpe" and tpe_grid.significant()
    assert tpe_grid.p_holm == pytest.approx(min(1.0, 3 * 2 / 2**12))  # the smallest p of 3
    assert tpe_grid.a12 == 1.0 and tpe_grid.median_difference == pytest.approx(0.05, abs=5e-3)
    assert (tpe_grid.wins, tpe_grid.ties) == (12, 0)
    assert not pairs[frozenset(("tpe", "random"))].significant()
    assert verdict.ranks.index[-1] == "grid"
    assert verdict.cliques() == [sorted(["random", "tpe"], key=list(verdict.ranks.index).index)]
    text = " ".join(verdict.sentences())
    assert "beats grid: p_holm = " in text and "A12 = 1.00 (large)" in text
    assert "no significant difference between" in text and "the samplers differ" in text
    assert "Too few repeats" not in text


def test_minimising_flips_the_verdict():
    verdict = stats.compare_paired(_blocks(12), maximise=False)
    best = verdict.ranks.index[0]
    assert best == "grid"
    assert any(p.better == "grid" and p.significant() for p in verdict.pairs)


def test_too_few_repeats_are_said_plainly():
    verdict = stats.compare_paired(_blocks(2))
    assert not any(p.significant() for p in verdict.pairs)
    assert verdict.sentences()[0].startswith("Too few repeats to conclude: with 2 paired")
    assert stats.repeats_needed(3) == 7  # 2**(1-7) * 3 = 0.047 < 0.05
    assert stats.repeats_needed(21) == 10  # 7 samplers: 2**-9 * 21 = 0.041


def test_paired_blocks_drops_incomplete_repeats():
    finals = pd.DataFrame({"sampler": ["a", "b", "a", "b", "a"], "repeat": [0, 0, 1, 1, 2],
                           "best": [1.0, 2.0, 1.5, 2.5, 3.0]})
    blocks, dropped = stats.paired_blocks(finals)
    assert list(blocks.columns) == ["a", "b"] and list(blocks.index) == [0, 1]
    assert dropped == 1
    verdict = stats.compare_paired(blocks, dropped=dropped)
    assert "1 repeat(s) left out" in verdict.sentences()[0]


def test_bootstrap_band_is_deterministic_and_holds_the_mean():
    values = np.array([0.1, 0.4, 0.5, 0.9])
    lo, hi = stats.bootstrap_mean_band(values)
    assert lo < values.mean() < hi and (lo, hi) == stats.bootstrap_mean_band(values)
    assert stats.bootstrap_mean_band(np.array([0.3])) == (0.3, 0.3)


def test_many_unseparated_pairs_are_one_sentence_after_the_closest_three():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.01, size=12)
    blocks = pd.DataFrame({name: 0.75 + noise + rng.normal(0, 0.005, 12)
                           for name in ("a", "b", "c", "d", "e")})
    blocks["grid"] = 0.60 + noise + rng.normal(0, 0.002, 12)
    verdict = stats.compare_paired(blocks)
    lines = verdict.sentences()
    beats = [line for line in lines if " beats grid" in line]
    assert len(beats) == 5  # every significant pair keeps its sentence
    unseparated = sorted((p for p in verdict.pairs if not p.significant()),
                         key=lambda p: p.p_holm)
    assert len(unseparated) == 10
    named = [line for line in lines if line.startswith("no significant difference between")]
    assert len(named) == 3 and f"{unseparated[0].better} and {unseparated[0].worse}" in named[0]
    assert lines[-1].startswith("no significant difference in the other 7 pairs either "
                                f"(p_holm >= {stats._p(unseparated[3].p_holm)}")
    assert len(verdict.pairs_frame()) == 15  # the table keeps every pair
