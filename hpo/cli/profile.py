"""``hpo profile``: measure the latency table of a study's search space on this machine.

    hpo profile [--study FILE ...] [--device cpu|cuda] [--threads T] [--batch B] [--out FILE]
                [--fit N] [--validate M] [--compare OLD.json]

Measures every part (op at every channels/resolution/stride, stem, cell preprocessing, node
sums, concatenations, head) at batch 1 and at --batch, then measures --fit + --validate
random architectures end to end per space: the first set fits the per-space correction, the
second, held out, says how well the prediction holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hpo.cli.common import Subparsers, add_debug
from hpo.options import check_flags
from search_core.errors import ConfigError

DEFAULT_TABLE = "runs/latency.json"


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    profile = subparsers.add_parser(
        "profile", help="measure a latency lookup table on this machine and validate it")
    profile.add_argument("--study", action="append", default=None,
                         help="study file whose space(s) to profile; repeat for several "
                              "or shipped study names (default digits)")
    profile.add_argument("--device", default="cpu", help="cpu or cuda")
    profile.add_argument("--threads", type=int, default=1, help="torch threads (fixed)")
    profile.add_argument("--batch", type=int, default=1,
                         help="also profile this batch size (batch 1 always)")
    profile.add_argument("--out", default=DEFAULT_TABLE, help="table JSON to write")
    profile.add_argument("--fit", type=int, default=30,
                         help="architectures measured end to end to fit the correction")
    profile.add_argument("--validate", type=int, default=60,
                         help="held-out architectures measured end to end to validate it")
    profile.add_argument("--rounds", type=int, default=35, help="timed rounds per latency")
    profile.add_argument("--seed", type=int, default=0, help="seed of the random architectures")
    profile.add_argument("--compare", default=None, metavar="OLD.json",
                         help="report how well this profile agrees with an earlier one")
    profile.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_debug(profile)
    profile.set_defaults(handler=cmd_profile)
    return profile


def _check(args: argparse.Namespace) -> None:
    check_flags([(args.threads >= 1, f"--threads: got {args.threads}; need >= 1"),
                 (args.batch >= 1, f"--batch: got {args.batch}; need >= 1"),
                 (args.fit >= 3, f"--fit: got {args.fit}; need >= 3 architectures to fit"),
                 (args.validate >= 1, f"--validate: got {args.validate}; need >= 1"),
                 (args.rounds >= 7, f"--rounds: got {args.rounds}; need >= 7")])
    if args.compare and not Path(args.compare).is_file():
        raise ConfigError(f"--compare: {args.compare} not found; pass a table written by an "
                          "earlier hpo profile")


def cmd_profile(args: argparse.Namespace) -> int:
    from hpo.layouts import study_layouts
    from hpo.study import load_study

    _check(args)
    specs = [load_study(path) for path in (args.study or [None])]  # before torch is imported
    from search_core.latency import LatencyTable, agreement, calibrate, profile_parts
    from search_core.timing import TimingSettings, fingerprint_mismatch, resolve_device

    resolve_device(args.device)
    layouts = [layout for spec in specs for layout in study_layouts(spec)]
    settings = TimingSettings(rounds=args.rounds, threads=args.threads, device=args.device)
    previous = LatencyTable.load(args.compare) if args.compare else None
    batches = sorted({1, args.batch})
    keys = len({k for layout in layouts for k in layout.part_keys()})
    print(f"profiling {keys} parts x {len(batches)} batch sizes on {args.device}, "
          f"{args.threads} thread(s)", file=sys.stderr)
    table = profile_parts(layouts, batches, settings)
    summary: dict[str, Any] = {"out": args.out, "fingerprint": table.fingerprint,
                               "parts": keys, "batches": batches, "spaces": []}
    for layout in layouts:
        for batch in batches:
            print(f"measuring {args.fit + args.validate} networks end to end: "
                  f"{layout.signature}, batch {batch}", file=sys.stderr)
            report = calibrate(table, layout, batch, args.fit, args.validate, args.seed)
            summary["spaces"].append({k: report[k] for k in
                                      ("signature", "batch", "fit", "naive", "corrected")})
    if previous is not None:
        differs = fingerprint_mismatch(previous.fingerprint, table.fingerprint)
        summary["agreement_with"] = {"table": args.compare, "fingerprint_differs": differs,
                                     **agreement(previous, table)}
    table.save(args.out)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    fp = summary["fingerprint"]
    lines = [f"latency table: {summary['out']} ({summary['parts']} parts, batches "
             f"{summary['batches']}; {fp['device_name']}, {fp['cores']} cores, "
             f"{fp['threads']} thread(s), torch {fp['torch']})"]
    for space in summary["spaces"]:
        lines.append(f"{space['signature']}, batch {space['batch']}: held-out "
                     f"{space['corrected']['n']} networks (correction fitted on "
                     f"{space['fit']} others)")
        for name in ("naive", "corrected"):
            s = space[name]
            lines.append(f"  {name:9s} rank corr {s['spearman']:.3f}, within +-10% "
                         f"{s['within_10pct']:.0%}, median |error| "
                         f"{s['median_abs_error_pct']:.1f}%, mean error "
                         f"{s['mean_error_pct']:+.1f}%")
    if "agreement_with" in summary:
        a = summary["agreement_with"]
        lines.append(f"agreement with {a['table']}: {a['within_spread']:.0%} of {a['entries']} "
                     f"parts ({a['within_spread_by_latency']:.0%} of their latency) within "
                     "their spread; median difference "
                     f"{a['median_rel_diff_pct']:.1f}%, largest {a['max_rel_diff_pct']:.1f}%")
        if a["fingerprint_differs"]:
            lines.append("  measured on another machine or setting: "
                         + "; ".join(a["fingerprint_differs"]))
    return "\n".join(lines)
