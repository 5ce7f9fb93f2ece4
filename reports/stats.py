"""Paired comparison of search strategies: a verdict a reader can quote.

Every sampler of a comparison group runs once per repeat, and repeat r of every sampler
trains with the same seed, so the final bests are *paired* by repeat (blocks). The tests:

- Friedman over samplers with repeats as blocks (are there any differences at all?);
- every pair: two-sided Wilcoxon signed-rank test on the paired differences, p-values
  adjusted by Holm over all pairs (Benavoli, Corani & Mangili 2016, "Should we really use
  post-hoc tests based on mean-ranks?", JMLR 17: mean-rank post-hoc tests such as Nemenyi
  make a pair's verdict depend on the other samplers; Wilcoxon-Holm does not);
- effect sizes: the median paired difference and Vargha-Delaney A12 (the probability that a
  run of one sampler beats a run of the other; 0.5 = no effect; 0.56 / 0.64 / 0.71 are the
  small / medium / large thresholds of Vargha & Delaney 2000);
- mean ranks and Nemenyi's critical difference (Demsar 2006) for the critical-difference
  diagram, whose bars join samplers that Wilcoxon-Holm does not separate.

scipy.stats only: scikit-posthocs and autorank would add dependencies for what is a few
lines here, and autorank chooses its tests by itself, while a comparison should state them.
numpy, pandas and scipy; never torch or optuna.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

ALPHA = 0.05
A12_THRESHOLDS = ((0.71, "large"), (0.64, "medium"), (0.56, "small"))  # Vargha & Delaney
BOOTSTRAP_SAMPLES = 2000


# ----------------------------------------------------------------------------- pieces


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i + 1), made monotone and
    capped at 1. NaN stays NaN and does not count towards m."""
    finite = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(finite)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(finite)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def a12(x: np.ndarray, y: np.ndarray) -> float:
    """Vargha-Delaney A12: P(X > Y) + P(X = Y) / 2 over all pairs of a value of x and of y."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x) or not len(y):
        return math.nan
    greater = (x[:, None] > y[None, :]).sum()
    equal = (x[:, None] == y[None, :]).sum()
    return float((greater + 0.5 * equal) / (len(x) * len(y)))


def a12_magnitude(value: float) -> str:
    """negligible / small / medium / large, symmetric around 0.5."""
    distance = max(value, 1.0 - value)
    return next((name for bound, name in A12_THRESHOLDS if distance >= bound), "negligible")


def smallest_wilcoxon_p(pairs: int) -> float:
    """The smallest two-sided p an exact signed-rank test can give with ``pairs`` non-zero
    differences (all of one sign): 2 / 2**pairs."""
    return min(1.0, 2.0 ** (1 - pairs)) if pairs > 0 else 1.0


def wilcoxon(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(statistic, two-sided p) of the signed-rank test of x - y; (0, 1) when every
    difference is zero (nothing to test), zero differences otherwise dropped (Wilcoxon)."""
    from scipy import stats

    diff = np.asarray(x, float) - np.asarray(y, float)
    if not np.any(diff != 0):
        return 0.0, 1.0
    res = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(min(max(res.pvalue, 0.0), 1.0))


def mean_ranks(blocks: pd.DataFrame, maximise: bool = True) -> pd.Series:
    """Mean rank per column over the rows (1 = best in a row; ties share the mean rank)."""
    ranks = blocks.rank(axis=1, ascending=not maximise, method="average")
    return ranks.mean(axis=0)


def nemenyi_cd(samplers: int, blocks: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks (Demsar 2006): q_alpha * sqrt(k (k + 1) /
    (6 N)) with q_alpha the studentised range quantile divided by sqrt 2."""
    from scipy import stats

    if samplers < 2 or blocks < 1:
        return math.nan
    q = stats.studentized_range.ppf(1 - alpha, samplers, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(samplers * (samplers + 1) / (6.0 * blocks)))


def bootstrap_mean_band(values: np.ndarray, level: float = 0.95,
                        samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values);
    (value, value) for a single value."""
    values = np.asarray(values, float)
    if len(values) < 2:
        v = float(values[0]) if len(values) else math.nan
        return v, v
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


# ----------------------------------------------------------------------------- the verdict


@dataclass(frozen=True)
class PairResult:
    """``better`` and ``worse`` are ordered by the median paired difference (better - worse
    >= 0), so every effect reads as "better over worse"."""

    better: str
    worse: str
    repeats: int
    median_difference: float
    a12: float  # unpaired: every run of better against every run of worse
    wins: int  # repeats in which better beat worse (paired)
    ties: int  # repeats with equal values
    statistic: float
    p_value: float
    p_holm: float

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_holm < alpha and self.median_difference != 0

    def sentence(self, alpha: float = ALPHA) -> str:
        effect = (f"A12 = {self.a12:.2f} ({a12_magnitude(self.a12)}), median paired "
                  f"difference {self.median_difference:+.4g}, better in {self.wins} of "
                  f"{self.repeats} repeats")
        if self.significant(alpha):
            return f"{self.better} beats {self.worse}: p_holm = {_p(self.p_holm)}, {effect}."
        return (f"no significant difference between {self.better} and {self.worse} at "
                f"{self.repeats} repeats (p_holm = {_p(self.p_holm)}, {effect}).")


SHOWN_UNSEPARATED = 3  # closest pairs without a difference, in words; the rest in one line


@dataclass(frozen=True)
class Verdict:
    samplers: list[str]
    repeats: int  # complete blocks (repeats every sampler finished)
    dropped_repeats: int  # repeats left out because some sampler has no value in them
    ranks: pd.Series  # mean rank per sampler, best first
    critical_difference: float  # Nemenyi, at alpha
    friedman_statistic: float
    friedman_p: float
    pairs: list[PairResult]
    alpha: float = ALPHA
    notes: list[str] = field(default_factory=list)

    def sentences(self) -> list[str]:
        """The verdict in words, the caveats first."""
        lines = list(self.notes)
        if not math.isnan(self.friedman_p):
            differ = ("the samplers differ" if self.friedman_p < self.alpha
                      else "no evidence that the samplers differ")
            lines.append(f"Friedman over {len(self.samplers)} samplers and {self.repeats} "
                         f"repeats: chi2 = {self.friedman_statistic:.3g}, "
                         f"p = {_p(self.friedman_p)}: {differ}.")
        lines += [pair.sentence(self.alpha) for pair in self.pairs if pair.significant(self.alpha)]
        unseparated = sorted((pair for pair in self.pairs if not pair.significant(self.alpha)),
                             key=lambda pair: pair.p_holm)
        lines += [pair.sentence(self.alpha) for pair in unseparated[:SHOWN_UNSEPARATED]]
        rest = unseparated[SHOWN_UNSEPARATED:]
        if rest:
            lines.append(f"no significant difference in the other {len(rest)} pairs either "
                         f"(p_holm >= {_p(rest[0].p_holm)}; every pair in the table of "
                         "pairwise tests).")
        return lines

    def pairs_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "better": p.better, "worse": p.worse, "repeats": p.repeats,
            "median_difference": p.median_difference, "a12": p.a12,
            "effect": a12_magnitude(p.a12), "wins": p.wins, "ties": p.ties,
            "wilcoxon_statistic": p.statistic,
            "p_value": p.p_value, "p_holm": p.p_holm,
            "significant": p.significant(self.alpha)} for p in self.pairs],
            columns=["better", "worse", "repeats", "median_difference", "a12", "effect",
                     "wins", "ties", "wilcoxon_statistic", "p_value", "p_holm", "significant"])

    def ranks_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"sampler": self.ranks.index, "mean_rank": self.ranks.to_numpy(),
                             "critical_difference": self.critical_difference})

    def cliques(self) -> list[list[str]]:
        """Runs of samplers adjacent in mean rank that no significant pair separates (the
        bars of a critical-difference diagram); maximal runs of two or more only."""
        order = list(self.ranks.index)
        separated = {frozenset((p.better, p.worse)) for p in self.pairs
                     if p.significant(self.alpha)}
        runs: list[list[str]] = []
        for start in range(len(order)):
            end = start
            while end + 1 < len(order) and not any(
                    frozenset((order[i], order[end + 1])) in separated
                    for i in range(start, end + 1)):
                end += 1
            run = order[start:end + 1]
            if len(run) > 1 and not any(set(run) <= set(r) for r in runs):
                runs.append(run)
        return runs


def _p(value: float) -> str:
    return "nan" if math.isnan(value) else (f"{value:.2g}" if value < 0.001 else
                                            f"{value:.3f}")


def paired_blocks(finals: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(repeat x sampler table of final bests with complete rows only, repeats dropped)."""
    table = finals.pivot_table(index="repeat", columns="sampler", values="best",
                               aggfunc="first")
    order = [s for s in dict.fromkeys(finals["sampler"]) if s in table.columns]
    table = table[order]
    complete = table.dropna(axis=0, how="any")
    return complete, len(table) - len(complete)


def compare_paired(blocks: pd.DataFrame, maximise: bool = True, alpha: float = ALPHA,
                   dropped: int = 0) -> Verdict:
    """The verdict on a repeat x sampler table of final bests (complete rows)."""
    from scipy import stats

    samplers = [str(c) for c in blocks.columns]
    n = len(blocks)
    sign = 1.0 if maximise else -1.0
    ranks = mean_ranks(blocks, maximise).sort_values(kind="stable")
    friedman_stat, friedman_p = math.nan, math.nan
    notes = []
    if dropped:
        notes.append(f"{dropped} repeat(s) left out: not every sampler finished them.")
    if len(samplers) >= 3 and n >= 2:
        spread = blocks.to_numpy(float)
        if np.ptp(spread, axis=1).any():
            res = stats.friedmanchisquare(*(spread[:, j] for j in range(len(samplers))))
            friedman_stat, friedman_p = float(res.statistic), float(res.pvalue)
    raw = [_pair(sign * blocks[a].to_numpy(float), sign * blocks[b].to_numpy(float), a, b)
           for a, b in itertools.combinations(samplers, 2)]
    adjusted = holm([pair.p_value for pair in raw])
    pairs = [replace(pair, p_holm=q) for pair, q in zip(raw, adjusted)]
    pairs.sort(key=lambda p: (p.p_holm, -abs(p.a12 - 0.5)))
    floor = smallest_wilcoxon_p(n)
    if pairs and floor * len(pairs) >= alpha:
        notes.append(f"Too few repeats to conclude: with {n} paired repeats the smallest "
                     f"possible Wilcoxon p is {_p(floor)}, and Holm over {len(pairs)} pairs "
                     f"needs one below {alpha / len(pairs):.2g}; about "
                     f"{repeats_needed(len(pairs), alpha)} repeats could separate a pair.")
    return Verdict(samplers, n, dropped, ranks, nemenyi_cd(len(samplers), n, alpha),
                   friedman_stat, friedman_p, pairs, alpha, notes)


def _pair(x: np.ndarray, y: np.ndarray, a: str, b: str) -> PairResult:
    """x, y: the two samplers' values, signed so that larger is better; p_holm unset."""
    if np.median(x - y) < 0:
        x, y, a, b = y, x, b, a
    statistic, p = wilcoxon(x, y)
    diff = x - y
    return PairResult(a, b, len(diff), float(np.median(diff)) if len(diff) else math.nan,
                      a12(x, y), int((diff > 0).sum()), int((diff == 0).sum()), statistic, p,
                      math.nan)


def repeats_needed(pairs: int, alpha: float = ALPHA) -> int:
    """The fewest paired repeats for which Wilcoxon-Holm can separate a pair at all."""
    n = 1
    while smallest_wilcoxon_p(n) * pairs >= alpha:
        n += 1
    return n
