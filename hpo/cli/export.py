"""``hpo export NAME``: a family member's genotype (and with ``--model`` its network)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hpo.cli.common import Subparsers, add_storage
from search_core.device import add_device_arguments


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    export = subparsers.add_parser("export",
                                   help="export a family member's genotype (and model)")
    export.add_argument("name")
    export.add_argument("--trial", default="best", help="trial number or 'best'")
    pick = export.add_mutually_exclusive_group(required=True)
    pick.add_argument("--s", help="complexity vector, e.g. 0.2,0.2,0.6")
    pick.add_argument("--latency-budget", default=None, metavar="DURATION",
                      help="pick the most accurate member measured under it, e.g. 2ms "
                           "(searches over s)")
    export.add_argument("--latency-table", default=None,
                        help="with --latency-budget: table from hpo profile to skip "
                             "architectures predicted far over budget")
    export.add_argument("--threads", type=int, default=1,
                        help="with --latency-budget: torch threads when measuring")
    export.add_argument("--batch", type=int, default=1,
                        help="with --latency-budget: batch size the budget is for")
    export.add_argument("--out", required=True, help="genotype JSON file to write")
    export.add_argument("--model", default=None, help="also write the network weights here")
    # where the member's accuracy and the model's BN statistics are computed; the model is
    # written from the CPU whatever the device
    add_device_arguments(export)
    add_storage(export)
    export.set_defaults(handler=cmd_export)
    return export


def chosen_s(args: argparse.Namespace, result: Any) -> tuple[list[float], dict[str, Any]]:
    """``--s``, or the member ``--latency-budget`` picks (printed, with what to record)."""
    from hpo.members import parse_s, pick_under_budget

    if args.latency_budget is None:
        return parse_s(args.s), {}
    pick = pick_under_budget(result, args.latency_budget, args.latency_table, args.threads,
                             args.batch)
    for warning in pick.warnings:
        print(warning, file=sys.stderr)
    print(pick.summary)
    return pick.s, pick.record


def cmd_export(args: argparse.Namespace) -> int:
    """The member's genotype (and with ``--model`` its network, written from the CPU);
    ``--device`` and ``--precision`` say where and how its accuracy is measured and the
    model's BN statistics recalibrated (default: auto, and the trial's precision)."""
    from hpo.members import format_s, load_trial_result, member_at
    from search_core.device import check_device_precision, resolve_device
    from search_core.files import write_bytes_atomically
    from search_core.result import as_simplex_point, save_model

    device = resolve_device(args.device or "auto", "--device")  # one line, before any work
    study, trial, _, result = load_trial_result(args.storage, args.name, args.trial,
                                                args.command)
    precision = args.precision or result.config.precision
    check_device_precision(device, precision, "--precision")
    result.config = result.config.replace(device=args.device or "auto", precision=precision)
    result.supernet.to(device)
    result.hypernet.to(device)
    s, extra = chosen_s(args, result)
    payload: dict[str, Any] = {"study": study.study_name, "trial": trial.number, **extra}
    s_vec = [round(v, 6) for v in as_simplex_point(s, len(result.ops)).tolist()]  # no float32
    # noise in what is written
    genotype = result.genotype(s_vec)
    member = member_at(result, s_vec)
    payload |= {
        "s": s_vec, "ops": list(result.ops), "genotype": genotype.to_dict(),
        "op_counts": {k: dict(v) for k, v in genotype.op_counts().items()},
        "accuracy": payload.get("accuracy", member.accuracy), "params": member.params,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out, json.dumps(payload, indent=1).encode())
    print(f"trial {trial.number} at s={format_s(s_vec)}: validation accuracy "
          f"{payload['accuracy']:.4f} (one-hot on the supernet's weights), "
          f"{member.params:,} parameters; genotype written to {out}")
    if args.model:
        from hpo.evaluation import cached_data

        model = result.model(s_vec, cached_data(result.config.data))
        save_model(model, args.model, study=study.study_name, trial=trial.number, s=s_vec)
        print(f"model written to {args.model}; load it with "
              "search_core.load_model(path) (weights only, no pickled code)")
    return 0
