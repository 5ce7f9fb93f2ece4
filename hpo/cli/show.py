"""``hpo show NAME``: a study's trials as a table, JSON or CSV, and where the time went."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

import optuna

from hpo.cli.common import Subparsers, add_storage
from hpo.facts import best_numbers
from hpo.records import metric_names, readable_columns, timing_summary, trial_row
from hpo.spreadsheet import defuse_formulas
from hpo.storage import load_existing_study

if TYPE_CHECKING:
    import pandas as pd


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    show = subparsers.add_parser("show", help="show a study's trials")
    show.add_argument("name")
    show.add_argument("--format", choices=("table", "json", "csv"), default="table")
    show.add_argument("--timing", action="store_true",
                      help="also print where the wall time went (trial vs harness overhead)")
    add_storage(show)
    show.set_defaults(handler=cmd_show)
    return show


def cmd_show(args: argparse.Namespace) -> int:
    study = load_existing_study(args.storage, args.name)
    best = best_numbers(study)
    rows = [trial_row(t) | {"best": t.number in best} for t in study.get_trials(deepcopy=False)]
    if args.format == "json":
        print(json.dumps({"study": study.study_name, "user_attrs": study.user_attrs,
                          "trials": rows}, indent=1, default=str))
        return 0
    import pandas as pd

    frame = pd.DataFrame(rows)
    if args.format == "csv":
        defuse_formulas(frame).to_csv(sys.stdout, index=False)
    else:
        print(readable_trials(frame, study) if not frame.empty else "(no trials)")
        for line in configuration_lines(study):
            print(line)
    if args.timing:
        print(timing_text(timing_summary(study.get_trials(deepcopy=False))))
    return 0


def readable_trials(frame: pd.DataFrame, study: optuna.Study) -> str:
    """The trials as a table a person reads: the best marked with *, values under the
    objective's name, 4 significant digits, no all-empty columns, empty where nothing is."""
    from hpo.announce import number

    frame = readable_columns(frame, metric_names(study))
    frame["best"] = frame["best"].map({True: "*", False: ""})
    frame = frame[["best", *[c for c in frame.columns if c != "best"]]]
    frame = frame.dropna(axis="columns", how="all")
    text = frame.astype(object).map(lambda v: "" if v is None or v != v else number(v))
    return text.to_string(index=False)


MAX_CONFIGURATIONS_SHOWN = 10


def configuration_lines(study: optuna.Study) -> list[str]:
    """An intensified study's configurations: mean ± sd over their seeds, the incumbent
    first (nothing for a study run without intensification)."""
    from hpo.announce import number, params_text
    from hpo.intensify import study_noise, summary_rows

    if study_noise(study) is None:
        return []
    rows = summary_rows(study)
    lines = [f"configurations by mean over seeds ({len(rows)}; * the incumbent):"]
    for row in rows[:MAX_CONFIGURATIONS_SHOWN]:
        mark = "*" if row["incumbent"] else " "
        lines.append(f"{mark} config {row['config']:>4}: {number(row['mean'])} ± "
                     f"{number(row['sd'])} over {row['seeds']} seed(s); "
                     f"{params_text(row['params'])}")
    if len(rows) > MAX_CONFIGURATIONS_SHOWN:
        lines.append(f"  ... {len(rows) - MAX_CONFIGURATIONS_SHOWN} more (hpo show --format csv "
                     "has every trial with its config and seed_index)")
    return lines


def timing_text(timing: dict[str, float]) -> str:
    if not timing:
        return "timing: needs two complete trials"
    return (f"timing over {int(timing['trials'])} complete trials (medians per trial): "
            f"search and evaluation {timing['evaluate_s']:.1f} s, harness overhead "
            f"{timing['overhead_s']:.2f} s ({100 * timing['overhead_share']:.1f} %); "
            f"first start to last end {timing['span_s']:.0f} s")
