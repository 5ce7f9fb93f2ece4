"""Figures drawn from the report's frames (``reports.study_frames``, ``group_frames``) with
matplotlib (Agg); each saved as PNG + SVG.

Every function takes the data, an output folder and a file stem, and returns the written
paths ([] when there is nothing to draw). matplotlib is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports.fidelity import ProxyFidelity
from reports.latency_frames import LatencyValidation
from reports.stats import Verdict
from reports.study_frames import LATENCY, ExtendedFront, Front
from search_core.errors import require_extra

ACC_LABEL = "validation accuracy (fraction)"
LATENCY_LABEL = "latency (ms, batch 1, measured on the target device)"
COMPLEXITY_LABELS = {"params": "parameters (count)", "cell_params": "cell parameters (count)",
                     LATENCY: LATENCY_LABEL, "bytes": "stored weights (bytes)"}


def _plt() -> Any:
    require_extra("matplotlib", "plot", "a report's figures")
    import matplotlib

    matplotlib.use("Agg", force=True)
    # names come from study files: a "$" in a parameter's name is text, not TeX math
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, dpi=110, bbox_inches="tight")  # legends placed outside the axes
    _plt().close(fig)
    return paths


# ----------------------------------------------------------------------------- studies


def family_front(best: Front | None, union: Front | None, out_dir: Path, stem: str,
                 title: str) -> list[Path]:
    """Best trial's family (probes A-D annotated) and its front, plus the union front."""
    if best is None and union is None:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    complexity = (best or union).complexity
    if union is not None:
        ax.scatter(union.members[complexity], union.members["accuracy"], s=10, c="0.8",
                   label="all trials' members")
        f = union.front
        ax.step(f[complexity], f["accuracy"], where="post", color="tab:gray", ls="--",
                label="union front")
    if best is not None:
        m = best.members
        ax.scatter(m[complexity], m["accuracy"], s=22, color="tab:blue",
                   label=f"{best.title} members")
        f = best.front
        ax.step(f[complexity], f["accuracy"], where="post", color="tab:blue", marker="o",
                label=f"{best.title} front")
        probes = m[m["is_seed_probe"]]
        ax.scatter(probes[complexity], probes["accuracy"], s=60, facecolors="none",
                   edgecolors="tab:red", label="probes A-D")
        for (x, y), part in probes.groupby([complexity, "accuracy"]):
            ax.annotate(",".join(part["probe"]), (x, y), textcoords="offset points",
                        xytext=(5, 5), color="tab:red")
    ax.set_xlabel(COMPLEXITY_LABELS.get(complexity, complexity))
    ax.set_ylabel(ACC_LABEL)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the data
    return _save(fig, out_dir, stem)


def extended_front(extended: ExtendedFront, out_dir: Path, stem: str,
                   title: str) -> list[Path]:
    """Searched members (hollow) and compressed ones (filled) of every trial, a line from
    each member to its compressed model, the searched members' front and the front over
    both (the extended front), each with its hypervolume."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    axis = extended.front.complexity
    members = extended.front.members
    searched = members[members["kind"] == "searched"]
    compressed = members[members["kind"] == "compressed"]
    for (_, _), pair in members.groupby(["trial", "probe"]):
        if len(pair) == 2:
            ax.plot(pair[axis], pair["accuracy"], color="0.85", lw=0.8, zorder=1)
    ax.scatter(searched[axis], searched["accuracy"], s=22, facecolors="none",
               edgecolors="tab:gray", label="searched members", zorder=2)
    ax.scatter(compressed[axis], compressed["accuracy"], s=22, color="tab:blue",
               label="compressed members", zorder=2)
    f = extended.searched_front
    ax.step(f[axis], f["accuracy"], where="post", color="tab:gray", ls="--",
            label=f"searched front (HV {extended.searched_hypervolume:.3f})")
    f = extended.front.front
    ax.step(f[axis], f["accuracy"], where="post", color="tab:blue", marker="o",
            label=f"extended front (HV {extended.hypervolume:.3f})")
    ax.set_xlabel(COMPLEXITY_LABELS.get(axis, axis))
    ax.set_ylabel(ACC_LABEL)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_dir, stem)


def op_counts(counts: pd.DataFrame, out_dir: Path, stem: str, title: str) -> list[Path]:
    """Grouped bars: one group per probe, one bar per op (the thesis's Figure 2)."""
    if counts.empty:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(counts.index))
    width = 0.8 / max(len(counts.columns), 1)
    for i, op in enumerate(counts.columns):
        ax.bar(x + (i - (len(counts.columns) - 1) / 2) * width, counts[op], width, label=op)
    ax.set_xticks(x, [f"probe {p}" for p in counts.index])
    ax.yaxis.set_major_locator(plt.MaxNLocator(integer=True))  # counts: whole ticks
    ax.set_xlabel("probe (complexity vector s)")
    ax.set_ylabel("operations in the architecture (count)")
    ax.set_title(title)
    ax.legend(title="op", fontsize="small")
    return _save(fig, out_dir, stem)


def history(frame: pd.DataFrame, out_dir: Path, stem: str, title: str) -> list[Path]:
    """Objective per complete trial and the best so far."""
    from reports.study_frames import objective_column

    col = objective_column(frame)
    if col is None:
        return []
    done = frame[frame["state"] == "COMPLETE"]
    if done.empty:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(done["number"], done[col], s=18, label="trial value")
    ax.step(done["number"], done["best_so_far"], where="post", color="tab:red",
            label="best so far")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # trial numbers: whole ticks
    ax.set_xlabel("trial number (trials)")
    ax.set_ylabel("objective value (study's objective)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, out_dir, stem)


def importance_bars(importances: dict[str, float], out_dir: Path, stem: str,
                    title: str) -> list[Path]:
    if not importances:
        return []
    plt = _plt()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], label="fANOVA importance")
    ax.set_xlabel("importance (fraction of objective variance)")
    ax.set_ylabel("hyperparameter")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return _save(fig, out_dir, stem)


def parallel_coordinates(frame: pd.DataFrame, out_dir: Path, stem: str,
                         title: str) -> list[Path]:
    """One line per complete trial over params normalised to [0, 1], coloured by value."""
    params = [c for c in frame.columns if c != "value"]
    if frame.empty or not params:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(params) + 2), 4))
    values = frame["value"].to_numpy(float)
    lo, hi = np.nanmin(values), np.nanmax(values)
    norm = plt.Normalize(lo, hi if hi > lo else lo + 1e-12)
    cmap = plt.get_cmap("viridis")
    x = np.arange(len(params))
    for order in np.argsort(values):
        ax.plot(x, frame[params].iloc[order].to_numpy(float), color=cmap(norm(values[order])),
                alpha=0.8, lw=1.2)
    ax.set_xticks(x, params)
    ax.set_ylim(-0.05, 1.05)
    for i, name in enumerate(params):  # each axis's own scale: choices, or range ends
        for y, label in frame.attrs.get("ticks", {}).get(name, []):
            ax.annotate(label, (i, y), xytext=(3, 0), textcoords="offset points",
                        fontsize="x-small", va="center",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "alpha": 0.7,
                              "lw": 0})
    ax.set_xlabel("hyperparameter")
    ax.set_ylabel("position in its range (0 = low end or first choice)")
    ax.set_title(title)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="objective value")
    return _save(fig, out_dir, stem)


# ----------------------------------------------------------------------------- latency


def latency_scatter(validation: LatencyValidation, out_dir: Path, stem: str,
                    title: str) -> list[Path]:
    """Predicted vs measured latency of the held-out networks: naive sum (grey) and corrected
    (blue, measured spread as error bars), the y = x line and a +-10 % band."""
    points = validation.points
    if points.empty:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    values = points[["measured_ms", "naive_ms", "predicted_ms"]].to_numpy(float)
    top = float(np.nanmax(values)) * 1.05
    line = np.array([0.0, top])
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="tab:green", alpha=0.12,
                    label="within +-10 %")
    ax.plot(line, line, color="k", lw=1, label="prediction = measurement")
    ax.scatter(points["measured_ms"], points["naive_ms"], s=18, color="0.55",
               label="naive sum of parts")
    ax.errorbar(points["measured_ms"], points["predicted_ms"],
                xerr=points["spread_ms"].fillna(0.0), fmt="o", ms=4, color="tab:blue",
                ecolor="tab:blue", elinewidth=0.8, label="corrected prediction")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("measured latency (ms, median over rounds)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")
    return _save(fig, out_dir, stem)


# ----------------------------------------------------------------------------- groups


def _colours(samplers: list[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(samplers)}


LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _styles(samplers: list[str]) -> dict[str, dict[str, Any]]:
    """Colour, dash and marker per sampler: lines that coincide stay distinguishable."""
    colours = _colours(samplers)
    return {s: {"color": colours[s], "linestyle": LINE_STYLES[i % len(LINE_STYLES)],
                "marker": MARKERS[i % len(MARKERS)], "markevery": 0.1, "markersize": 4}
            for i, s in enumerate(samplers)}


def _sampler_bands(frame: pd.DataFrame, columns: tuple[str, str, str, str], labels: tuple[str, str],
                   legend: str, out_dir: Path, stem: str, title: str,
                   step: bool = False) -> list[Path]:
    """One line per sampler with a band around it; ``columns`` = (x, line, band low, band
    high), ``labels`` = (x label, y label), legend titled ``legend`` outside the axes."""
    if frame.empty:
        return []
    x, line, low, high = columns
    plt = _plt()
    samplers = list(dict.fromkeys(frame["sampler"]))
    styles = _styles(samplers)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for s in samplers:
        part = frame[frame["sampler"] == s]
        ax.plot(part[x], part[line], label=s, drawstyle="steps-post" if step else "default",
                **styles[s])
        ax.fill_between(part[x], part[low], part[high], color=styles[s]["color"], alpha=0.12,
                        step="post" if step else None)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    ax.legend(title=legend, fontsize="small", title_fontsize="small", loc="upper left",
              bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_dir, stem)


def best_so_far_trials(summary: pd.DataFrame, out_dir: Path, stem: str,
                       title: str) -> list[Path]:
    """Mean best-so-far per sampler vs trial index, 95 % bootstrap band over repeats."""
    return _sampler_bands(summary, ("trial", "mean", "mean_lo", "mean_hi"),
                          ("trials", "best objective so far"), "mean, 95 % bootstrap band",
                          out_dir, stem, title)


def best_so_far_time(curves: pd.DataFrame, out_dir: Path, stem: str,
                     title: str, simulated: bool = False) -> list[Path]:
    """Best-so-far vs wall time, one step line per repeat, coloured by sampler."""
    curves = curves.dropna(subset=["elapsed_s"])
    if curves.empty:
        return []
    plt = _plt()
    samplers = list(dict.fromkeys(curves["sampler"]))
    styles = _styles(samplers)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for s in samplers:
        style = {k: v for k, v in styles[s].items() if k in ("color", "linestyle")}
        for i, (_, part) in enumerate(curves[curves["sampler"] == s].groupby("study")):
            ax.step(part["elapsed_s"], part["best"], where="post", alpha=0.6,
                    label=s if i == 0 else None, **style)
    ax.set_xlabel("simulated time (s; the tabulated run times, one trial after another)"
                  if simulated else "wall time (s)")
    ax.set_ylabel("best objective so far")
    ax.set_title(title)
    ax.legend(title="sampler", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_dir, stem)


def critical_difference(verdict: Verdict, out_dir: Path, stem: str, title: str) -> list[Path]:
    """Mean ranks on one axis (1 = best, left), Nemenyi's critical difference as a bar, and
    bars under the samplers that pairwise Wilcoxon-Holm does not separate."""
    if len(verdict.samplers) < 2 or not verdict.repeats:
        return []
    plt = _plt()
    k = len(verdict.samplers)
    cliques = verdict.cliques()
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.32 * (k + len(cliques))))
    ranks = verdict.ranks
    colours = _colours(list(verdict.samplers))
    for i, (sampler, rank) in enumerate(ranks[::-1].items()):  # the best lowest: no crossing
        y = -(i + 1) * 0.32
        ax.plot([rank, rank], [0, y], color=colours[sampler], lw=1)
        ax.plot([rank], [0], "o", color=colours[sampler], ms=5)
        ax.text(k + 0.15, y, f"{sampler} ({rank:.2f})", va="center", fontsize=9)
        ax.plot([rank, k + 0.1], [y, y], color=colours[sampler], lw=1)
    for j, clique in enumerate(cliques):
        y = 0.18 + 0.14 * j
        ax.plot([ranks[clique[0]], ranks[clique[-1]]], [y, y], color="black", lw=3)
    if not np.isnan(verdict.critical_difference):
        y = 0.3 + 0.14 * len(cliques)
        ax.plot([1, 1 + verdict.critical_difference], [y, y], color="tab:red", lw=2)
        ax.text(1, y + 0.08, f"CD (Nemenyi, alpha {verdict.alpha}) = "
                f"{verdict.critical_difference:.2f}", fontsize=8, color="tab:red")
    ax.set_xlim(0.8, k + 1.9)
    ax.set_ylim(-(k + 0.8) * 0.32, 0.55 + 0.14 * len(cliques))
    ax.set_xticks(range(1, k + 1))
    ax.set_xlabel(f"mean rank over {verdict.repeats} repeats (1 = best); black bars: no "
                  "significant Wilcoxon-Holm difference")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.set_title(title)
    return _save(fig, out_dir, stem)


def attainment(surfaces: pd.DataFrame, out_dir: Path, stem: str, title: str,
               complexity: str | None) -> list[Path]:
    """Per sampler the median attainment surface (line) between the best and the worst
    (band): accuracy attained at each complexity by half, one and all of the repeats."""
    return _sampler_bands(surfaces, ("complexity", "median", "worst", "best"),
                          (COMPLEXITY_LABELS.get(complexity or "", "complexity (objective 2)"),
                           ACC_LABEL), "median; band: best to worst repeat", out_dir, stem,
                          title, step=True)


def final_best_distribution(finals: pd.DataFrame, out_dir: Path, stem: str,
                            title: str, ylabel: str = "final best objective") -> list[Path]:
    """Box per sampler with the repeats' final bests as points."""
    finals = finals.dropna(subset=["best"])
    if finals.empty:
        return []
    plt = _plt()
    samplers = list(dict.fromkeys(finals["sampler"]))
    colours = _colours(samplers)
    data = [finals.loc[finals["sampler"] == s, "best"].to_numpy() for s in samplers]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(samplers) + 2), 4.5))
    ax.boxplot(data, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (s, vals) in enumerate(zip(samplers, data), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, color=colours[s], s=22,
                   zorder=3)
    ax.set_xticks(range(1, len(samplers) + 1),
                  [f"{s}\n({len(vals)} repeats)" for s, vals in zip(samplers, data)])
    ax.set_xlabel("sampler (box: quartiles; points: one repeat each)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, out_dir, stem)


def layout(points: pd.DataFrame, axes: tuple[str, str], distinct: pd.DataFrame,
           out_dir: Path, stem: str, title: str) -> list[Path]:
    """One panel per sampler: trials projected onto the most vs least important param."""
    if points.empty:
        return []
    plt = _plt()
    samplers = list(dict.fromkeys(points["sampler"]))
    fig, axs = plt.subplots(1, len(samplers), figsize=(3.6 * len(samplers) + 1, 4.2),
                            squeeze=False, sharex=True, sharey=True, layout="constrained")
    lo, hi = points["value"].min(), points["value"].max()
    norm = plt.Normalize(lo, hi if hi > lo else lo + 1e-12)
    for ax, s in zip(axs[0], samplers):
        part = points[points["sampler"] == s]
        sc = ax.scatter(part["x"], part["y"], c=part["value"], cmap="viridis", norm=norm, s=20)
        nx = distinct.loc[s, axes[0]] if s in distinct.index else float("nan")
        ny = distinct.loc[s, axes[1]] if s in distinct.index else float("nan")
        ax.set_title(f"{s}: distinct values per repeat\n{axes[0]} {nx:.3g}, "
                     f"{axes[1]} {ny:.3g} (mean)", fontsize="small")
        ax.set_xlabel(f"{axes[0]} (most important)")
    axs[0][0].set_ylabel(f"{axes[1]} (least important)")
    fig.colorbar(sc, ax=axs[0].tolist(), label="objective value")
    fig.suptitle(title)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


def proxy_fidelity(fidelity: ProxyFidelity, out_dir: Path, stem: str, title: str) -> list[Path]:
    """Left: proxy vs trained test accuracy per genotype (sd over seeds as bars), with
    Kendall's tau and Spearman's rho. Right: both accuracies against parameters, each with
    its Pareto front (fewer parameters, higher accuracy)."""
    frame = fidelity.frame
    if frame.empty:
        return []
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.errorbar(frame["proxy_accuracy"], frame["test_acc_mean"], yerr=frame["test_acc_sd"],
                  fmt="o", capsize=3)
    for _, row in frame.iterrows():
        left.annotate(str(row["labels"])[:12], (row["proxy_accuracy"], row["test_acc_mean"]),
                      fontsize=7, xytext=(3, 3), textcoords="offset points")
    low, high = fidelity.kendall_ci
    left.set_title(f"Kendall tau {fidelity.kendall:.2f} [{low:.2f}, {high:.2f}], Spearman "
                   f"rho {fidelity.spearman:.2f} (n={len(frame)})", fontsize=9)
    left.set_xlabel("proxy accuracy (family member on shared weights, validation)")
    left.set_ylabel("trained test accuracy (mean over seeds)")
    for column, label, colour in (("proxy_accuracy", "proxy", "tab:gray"),
                                  ("test_acc_mean", "trained", "tab:blue")):
        points = frame.sort_values("params")
        right.scatter(points["params"], points[column], c=colour, s=18, label=label)
        best = points[column].cummax()
        front = points[points[column] >= best]
        right.step(front["params"], front[column], where="post", color=colour)
    right.set_xlabel(COMPLEXITY_LABELS["params"])
    right.set_ylabel("accuracy (fraction)")
    right.legend(fontsize="small")
    fig.suptitle(title, fontsize=10)
    return _save(fig, out_dir, stem)


def stage_effect(frame: pd.DataFrame, param: str, out_dir: Path, stem: str,
                 title: str) -> list[Path]:
    """Over one tuned pipeline setting: validation accuracy before and after the stage, and
    the member's measured latency, in separate panels (one marker per probe)."""
    if frame.empty or param not in frame:
        return []
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (probe, part) in enumerate(frame.groupby("probe", sort=True)):
        marker = MARKERS[i % len(MARKERS)]
        left.scatter(part[param], part["accuracy_after"], marker=marker, label=f"{probe} after")
        left.scatter(part[param], part["accuracy_before"], marker=marker, facecolors="none",
                     edgecolors="0.5", label=f"{probe} before")
        right.scatter(part[param], part["member_latency_ms"], marker=marker, label=probe)
    values = pd.to_numeric(frame[param], errors="coerce").dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() >= 20:
        for ax in (left, right):  # a setting tuned over decades (log: true)
            ax.set_xscale("log")
    left.set_xlabel(param)
    left.set_ylabel(ACC_LABEL)
    left.set_title("accuracy before and after the stage", fontsize="small")
    left.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    right.set_xlabel(param)
    right.set_ylabel("latency (ms, batch 1, measured)")
    right.set_title("latency of the compressed member", fontsize="small")
    right.legend(title="probe", fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, out_dir, stem)
