"""``hpo bench supernet``: training throughput of the search_core supernet, in images/s.

    hpo bench supernet                      # the thesis's Experiment 1 shape, 28x28x1 input
    hpo bench supernet --compare --json     # fast and per-edge in one run, and the speed-up
    hpo bench supernet --channels 8 --image 8 --threads 1    # the digits shape
    hpo bench supernet --device cuda --precision bf16        # on the GPU, bf16 autocast

``--device`` is cpu unless given (the numbers in benchmarks/results are CPU numbers; auto
would change their meaning on a GPU machine); the device and precision are in the record.

``hpo bench contention``: the same steps beside 0, 1 and 2 busy neighbour processes that it
starts and stops itself, for the thread policy before and after (hpo/contention.py).

Only argparse at import time: torch loads when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hpo.cli.common import Subparsers, add_debug
from search_core.device import add_device_arguments
from search_core.errors import ConfigError
from search_core.threads import WAIT_POLICIES

EXP1_OPS = "max_pool_3x3,skip_connect,sep_conv_3x3"
IMPLS = ("fast", "per-edge")
MODES = {"soft": "soft", "single-path": "single_path"}


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    bench = subparsers.add_parser("bench", help="time the supernet's training steps")
    kinds = bench.add_subparsers(dest="target", required=True)
    net = kinds.add_parser(
        "supernet", help="forward + backward + optimiser steps, images/s (median step)")
    net.add_argument("--ops", default=EXP1_OPS, help=f"comma-separated (default {EXP1_OPS})")
    net.add_argument("--cells", default="3", help="L cells (default 3)")
    net.add_argument("--nodes", default="4", help="N nodes per cell (default 4)")
    net.add_argument("--channels", default="16", help="C channels (default 16, Experiment 1)")
    net.add_argument("--image", default="28", help="input height = width (default 28)")
    net.add_argument("--in-channels", default="1", help="input channels (default 1)")
    net.add_argument("--batch", default="64", help="minibatch size (default 64)")
    net.add_argument("--steps", default="10", help="timed steps after 3 warm-up steps")
    net.add_argument("--impl", default="fast", help="fast (default) or per-edge")
    net.add_argument("--mode", default="soft", help="soft (default) or single-path (fast only)")
    net.add_argument("--threads", default=None,
                     help="torch threads (default: a trial's, search_core/threads.py)")
    net.add_argument("--openmp-wait", default=None, choices=tuple(WAIT_POLICIES),
                     help="OpenMP wait policy (default passive, unless OMP_WAIT_POLICY or "
                          "GOMP_SPINCOUNT is set; openmp: OpenMP's own spin-then-sleep)")
    net.add_argument("--warmup", default="3", help="untimed steps first (default 3)")
    net.add_argument("--max-seconds", default=None,
                     help="stop timing after S seconds (at least 3 steps)")
    net.add_argument("--compare", action="store_true",
                     help="time fast and per-edge in one run (alternating steps)")
    net.add_argument("--json", action="store_true", help='one line {"images_per_s": ...}')
    add_device_arguments(net, default_device="cpu")
    add_debug(net)
    _add_contention(kinds)
    bench.set_defaults(handler=cmd_bench)
    return bench


def _add_contention(kinds: argparse._SubParsersAction) -> None:
    load = kinds.add_parser(
        "contention", help="supernet images/s beside 0, 1, 2 busy processes, per policy")
    load.add_argument("--shapes", default="digits,exp1",
                      help="digits (8x8x1, C=8) and/or exp1 (28x28x1, C=16)")
    load.add_argument("--neighbours", default="0,1,2",
                      help="counts of busy-loop processes to run beside (0 = quiet)")
    load.add_argument("--policies", default="old,new",
                      help="old, new or THREADS:WAIT (e.g. 2:passive), comma-separated")
    load.add_argument("--repeats", default="3", help="blocks of measurements (medians)")
    load.add_argument("--seconds", default="8", help="timed seconds per measurement")
    load.add_argument("--json", action="store_true", help="one JSON object with every row")
    load.add_argument("--debug", action="store_true", help="tracebacks on errors")


def _int(args: argparse.Namespace, name: str, low: int) -> int:
    value = getattr(args, name)
    flag = "--" + name.replace("_", "-")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag}: got {value!r}; need an integer >= {low}") from None
    if number < low:
        raise ConfigError(f"{flag}: got {number}; need an integer >= {low}")
    return number


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"--max-seconds: got {value!r}; need a number of seconds > 0")
    return seconds


def _counts(text: str, flag: str, low: int) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < low:
        raise ConfigError(f"{flag}: got {text!r}; need comma-separated integers >= {low}")
    return counts


def cmd_contention(args: argparse.Namespace) -> int:
    import hpo.contention as contention
    from search_core.threads import usable_cpus

    cpus = usable_cpus()
    shapes = [contention.SHAPES[_choice(name, "--shapes", contention.SHAPES)]
              for name in args.shapes.split(",") if name]
    policies = [contention.Policy.parse(text, cpus) for text in args.policies.split(",") if text]
    counts = _counts(args.neighbours, "--neighbours", 0)
    repeats = _int(args, "repeats", 1)
    seconds = _seconds(args.seconds) or 0.0
    if not shapes or not policies:
        raise ConfigError("--shapes and --policies need at least one name each")

    def progress(m: Any) -> None:
        if not args.json:
            print(f"  {m.shape} {m.policy} ({m.threads} thread(s), {m.wait}) beside "
                  f"{m.neighbours}: {m.images_per_s:.1f} images/s", file=sys.stderr, flush=True)

    found = contention.run(shapes, policies, counts, repeats, seconds, on_measurement=progress)
    rows = contention.summarise(found, cpus)
    record = {"cpus": cpus, "repeats": repeats, "seconds": seconds,
              "rows": [row.to_dict() for row in rows], "machine": _machine()}
    if args.json:
        print(json.dumps(record))
        return 0
    print(f"{cpus} usable CPU(s); medians of {repeats} fresh processes, {seconds:g} s timed "
          "each; slowdown = quiet / loaded images/s of the same policy; fair = what a fair "
          "share of the CPUs costs; /fair = slowdown / fair")
    print(contention.table(rows))
    names = [p.name for p in policies]
    if "old" in names and "new" in names:
        for shape, ratio in contention.quiet_ratios(rows, "new", "old").items():
            print(f"quiet, {shape}: new / old = {ratio:.2f}x images/s")
    return 0


def _machine() -> dict[str, Any]:
    import platform

    from search_core.machine import cpu_model

    return {"cpu": cpu_model(), "python": platform.python_version()}


def _choice(value: str, flag: str, choices: Any) -> str:
    if value not in choices:
        raise ConfigError(f"{flag}: got {value!r}; expected one of {', '.join(choices)}")
    return value


def _space(args: argparse.Namespace) -> Any:
    from search_core.config import SearchSpace

    ops = tuple(op.strip() for op in args.ops.split(",") if op.strip())
    sizes = {key: _int(args, key, low) for key, low in (("cells", 1), ("nodes", 1),
                                                         ("channels", 2))}
    try:
        return SearchSpace(ops=ops, **sizes)
    except ConfigError as err:  # "space.ops: ..." -> "--ops: ..."
        raise ConfigError(str(err).replace("space.", "--", 1)) from None


def cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "contention":
        return cmd_contention(args)
    return cmd_supernet(args)


def cmd_supernet(args: argparse.Namespace) -> int:
    from search_core.bench import bench_supernet, compare_supernets, machine
    from search_core.device import check_device_precision, device_record, resolve_device
    from search_core.threads import threads_per_trial

    precision = args.precision or "fp32"
    device = resolve_device(args.device, "--device")  # one line, before any work
    check_device_precision(device, precision, "--precision")
    space = _space(args)
    shape = {"image": _int(args, "image", 1), "in_channels": _int(args, "in_channels", 1),
             "batch": _int(args, "batch", 2), "steps": _int(args, "steps", 1),
             "warmup": _int(args, "warmup", 0), "max_seconds": _seconds(args.max_seconds)}
    where = {"device": args.device, "precision": precision}
    impl = _choice(args.impl, "--impl", IMPLS)
    mode = MODES[_choice(args.mode, "--mode", MODES)]
    threads = threads_per_trial(None if args.threads is None else _int(args, "threads", 1))
    if mode == "single_path" and (impl != "fast" or args.compare):
        raise ConfigError("--mode single-path runs on the fast supernet only; "
                          "drop --impl per-edge / --compare")
    if args.compare:
        per_edge, fast = compare_supernets(space, mode=mode, threads=threads, **shape,
                                           **where)
        record = _record(fast) | {
            "per_edge_images_per_s": per_edge.images_per_s,
            "per_edge_step_seconds_median": per_edge.step_seconds_median,
            "speedup": fast.images_per_s / per_edge.images_per_s,
        }
    else:
        record = _record(bench_supernet(space, impl=impl, mode=mode, threads=threads, **shape,
                                        **where))
    record |= {"ops": list(space.ops), "cells": space.cells, "nodes": space.nodes,
               "channels": space.channels, "machine": machine()}
    record |= device_record(device)  # the device again, and a GPU's name
    print(json.dumps(record) if args.json else _text(record, args.compare))
    return 0


def _record(result: Any) -> dict[str, Any]:
    keys = ("images_per_s", "step_seconds_median", "impl", "mode", "batch", "image",
            "in_channels", "warmup", "threads", "peak_rss_mib", "device", "precision")
    data = result.to_dict()
    return {key: data[key] for key in keys} | {"steps": len(result.step_seconds)}


def _text(record: dict[str, Any], compare: bool) -> str:
    shape = (f"{','.join(record['ops'])}; {record['cells']} cells x {record['nodes']} nodes, "
             f"C={record['channels']}; batch {record['batch']} x {record['in_channels']}x"
             f"{record['image']}x{record['image']}; {record['threads']} thread(s), "
             f"{record['device']} {record['precision']}, median of {record['steps']} steps")
    lines = [shape]
    if compare:
        lines.append(f"per-edge      {record['per_edge_images_per_s']:10.1f} images/s")
    lines.append(f"{record['impl']:<8} {record['mode']:<4} {record['images_per_s']:10.1f} images/s")
    if compare:
        lines.append(f"speed-up      {record['speedup']:10.2f}x")
    return "\n".join(lines)
