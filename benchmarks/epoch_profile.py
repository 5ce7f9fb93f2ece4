"""Where one search epoch goes, at the Experiment 1 shape: the parts of a training step
(minibatch, architecture sample, supernet forward, backward, optimiser steps), the
validation pass, and the family evaluation (BN recalibration and validation per probe),
for each precision and thread count asked.

    python benchmarks/epoch_profile.py --images 1280 --precisions fp32,bf16 --threads 1,2

Runs the engine's own trainer (``search_core.engine._Trainer``) on Fashion-MNIST when it is
installed (else random images of the same shape), one configuration after another in one
process, each with a warm-up; prints a table and, with ``--json``, one JSON line per
configuration. Seconds are per ``--images`` training images (and ``--val`` validation
images); the per-step parts are medians over the timed steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from search_core.threads import configure_process

PARTS = ("batch", "sample", "forward", "backward", "optimiser")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1280, help="training images timed")
    p.add_argument("--val", type=int, default=1024, help="validation images")
    p.add_argument("--probes", type=int, default=4, help="family members evaluated (A-D)")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def load(args: argparse.Namespace) -> Any:
    from search_core.data import DataConfig, load_data
    from search_core.errors import DataError

    try:
        return load_data(DataConfig(name="fashion-mnist", val_fraction=0.1,
                                    train_limit=args.images, val_limit=args.val)), "fashion-mnist"
    except DataError:
        import torch

        from search_core.data import DataSplits, Split

        def split(n: int) -> Split:
            return Split(torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,)))

        return DataSplits("random", split(args.images), split(args.val), split(args.val), 10, 1,
                          (28, 28)), "random 28x28"


def profile(args: argparse.Namespace, data: Any, precision: str, threads: int) -> dict[str, Any]:
    import torch

    from search_core.config import SearchConfig, SearchSpace, TrainConfig
    from search_core.data import batches
    from search_core.device import resolve_device
    from search_core.engine import _Trainer
    from search_core.family import hard_accuracy
    from search_core.probes import seed_probes
    from search_core.result import SearchResult
    from search_core.supernet import gumbel_softmax

    torch.set_num_threads(threads)
    config = SearchConfig(space=SearchSpace(channels=args.channels),
                          train=TrainConfig(epochs=1, batch_size=args.batch),
                          precision=precision, threads=threads)  # type: ignore[arg-type]
    torch.manual_seed(0)
    trainer = _Trainer(config, data, resolve_device("cpu"))
    parts: dict[str, list[float]] = {name: [] for name in PARTS}
    steps = list(batches(trainer.data.train, args.batch, trainer.torch_rng))
    trainer.supernet.train()
    for step, (x, y) in enumerate([steps[0], *steps]):  # the first is a warm-up
        times = {}
        (x, y), times["batch"] = timed(lambda x=x, y=y: (x.contiguous(), y))
        gamma, times["sample"] = timed(lambda: gumbel_softmax(
            trainer.hypernet(trainer.draw_s()), 1.0, trainer.torch_rng))
        logits, times["forward"] = timed(lambda gamma=gamma, x=x: trainer.forward(x, gamma=gamma))
        loss = torch.nn.functional.cross_entropy(logits, y)
        trainer.w_optimizer.zero_grad(set_to_none=True)
        trainer.a_optimizer.zero_grad(set_to_none=True)
        _, times["backward"] = timed(loss.backward)
        _, times["optimiser"] = timed(lambda: (trainer.w_optimizer.step(),
                                               trainer.a_optimizer.step()))
        if step:
            for name, seconds in times.items():
                parts[name].append(seconds)
    _, val_s = timed(lambda: trainer.val_accuracy(1.0))
    result = SearchResult(config, trainer.supernet, trainer.hypernet,
                          data_info=data.summary())
    probes = seed_probes(config.space.ops)[: args.probes]
    _, family_s = timed(lambda: [hard_accuracy(result.supernet,
                                               result.genotype(p.s).choice(config.space),
                                               trainer.data, precision=precision)
                                 for p in probes])
    n_steps = len(steps)
    median = {name: statistics.median(values) for name, values in parts.items()}
    step_s = sum(median.values())
    return {"precision": precision, "threads": threads, "images": len(data.train),
            "steps": n_steps, **{f"{k}_ms": 1000 * v for k, v in median.items()},
            "step_ms": 1000 * step_s, "train_images_per_s": args.batch / step_s,
            "train_s": step_s * n_steps, "val_s": val_s, "val_images": len(data.val),
            "family_s_per_probe": family_s / len(probes)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    configure_process(max(threads))
    data, name = load(args)
    rows = [profile(args, data, p, t) for t in threads for p in args.precisions.split(",")]
    print(f"data: {name}; channels {args.channels}, batch {args.batch}; "
          f"{len(data.train)} training, {len(data.val)} validation images")
    print(f"{'precision':9} {'thr':>3} " + " ".join(f"{p + ' ms':>12}" for p in PARTS) +
          f" {'step ms':>9} {'img/s':>7} {'val s':>7} {'probe s':>8}")
    for r in rows:
        print(f"{r['precision']:9} {r['threads']:>3} " +
              " ".join(f"{r[p + '_ms']:12.1f}" for p in PARTS) +
              f" {r['step_ms']:9.1f} {r['train_images_per_s']:7.1f} {r['val_s']:7.2f} "
              f"{r['family_s_per_probe']:8.2f}")
    if args.json:
        for r in rows:
            print(json.dumps(r))


if __name__ == "__main__":
    main()
