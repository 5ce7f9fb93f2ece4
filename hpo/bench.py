"""``hpo bench supernet``: training throughput of the search_core supernet, in images/s.

    hpo bench supernet                      # the seed's Experiment 1 shape, 28x28x1 input
    hpo bench supernet --compare --json     # fast and per-edge in one run, and the speed-up
    hpo bench supernet --channels 8 --image 8 --threads 1    # the digits shape

Only argparse at import time: torch loads when the command runs.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from search_core.errors import ConfigError

EXP1_OPS = "max_pool_3x3,skip_connect,sep_conv_3x3"
IMPLS = ("fast", "per-edge")
MODES = {"soft": "soft", "single-path": "single_path"}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    net.add_argument("--threads", default=None, help="torch threads (default: torch's)")
    net.add_argument("--compare", action="store_true",
                     help="time fast and per-edge in one run (alternating steps)")
    net.add_argument("--json", action="store_true", help='one line {"images_per_s": ...}')
    net.add_argument("--debug", action="store_true", help="tracebacks on errors")
    return bench


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
    from search_core.bench import bench_supernet, compare_supernets, machine

    space = _space(args)
    shape = {"image": _int(args, "image", 1), "in_channels": _int(args, "in_channels", 1),
             "batch": _int(args, "batch", 2), "steps": _int(args, "steps", 1)}
    impl = _choice(args.impl, "--impl", IMPLS)
    mode = MODES[_choice(args.mode, "--mode", MODES)]
    threads = None if args.threads is None else _int(args, "threads", 1)
    if mode == "single_path" and (impl != "fast" or args.compare):
        raise ConfigError("--mode single-path runs on the fast supernet only; "
                          "drop --impl per-edge / --compare")
    if args.compare:
        per_edge, fast = compare_supernets(space, mode=mode, threads=threads, **shape)
        record = _record(fast) | {
            "per_edge_images_per_s": per_edge.images_per_s,
            "per_edge_step_seconds_median": per_edge.step_seconds_median,
            "speedup": fast.images_per_s / per_edge.images_per_s,
        }
    else:
        record = _record(bench_supernet(space, impl=impl, mode=mode, threads=threads, **shape))
    record |= {"ops": list(space.ops), "cells": space.cells, "nodes": space.nodes,
               "channels": space.channels, "machine": machine()}
    print(json.dumps(record) if args.json else _text(record, args.compare))
    return 0


def _record(result: Any) -> dict[str, Any]:
    keys = ("images_per_s", "step_seconds_median", "impl", "mode", "batch", "image",
            "in_channels", "warmup", "threads", "peak_rss_mib")
    data = result.to_dict()
    return {key: data[key] for key in keys} | {"steps": len(result.step_seconds)}


def _text(record: dict[str, Any], compare: bool) -> str:
    shape = (f"{','.join(record['ops'])}; {record['cells']} cells x {record['nodes']} nodes, "
             f"C={record['channels']}; batch {record['batch']} x {record['in_channels']}x"
             f"{record['image']}x{record['image']}; {record['threads']} thread(s), median of "
             f"{record['steps']} steps")
    lines = [shape]
    if compare:
        lines.append(f"per-edge      {record['per_edge_images_per_s']:10.1f} images/s")
    lines.append(f"{record['impl']:<8} {record['mode']:<4} {record['images_per_s']:10.1f} images/s")
    if compare:
        lines.append(f"speed-up      {record['speedup']:10.2f}x")
    return "\n".join(lines)
