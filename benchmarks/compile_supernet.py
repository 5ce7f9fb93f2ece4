"""Eager vs ``torch.compile`` (inductor, CPU) of the fast supernet's training step.

    python benchmarks/compile_supernet.py digits 40      # 8x8x1, C=8
    python benchmarks/compile_supernet.py exp1 10        # 28x28x1, C=16
    python benchmarks/compile_supernet.py digits 40 --threads 2

Runs the eager step and the compiled one in this process: the compiled step's first call
(tracing, and inductor's C++ compiled with gcc unless its on-disk cache under
/tmp/torchinductor_$USER already holds the graph), then the median of STEPS steps of each,
alternating, so both see the same machine. The result is in docs/benchmarks.md ("A compiled
graph"): not adopted.
"""

from __future__ import annotations

import argparse
import statistics
import time

from search_core.threads import configure_process

SHAPES = {"digits": (8, 8), "exp1": (16, 28)}  # channels, image side
BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=tuple(SHAPES))
    parser.add_argument("steps", type=int)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_process(args.threads)  # before torch is imported
    import torch

    from search_core.bench import TrainingStep
    from search_core.config import SearchSpace

    torch.set_num_threads(args.threads)
    channels, image = SHAPES[args.shape]
    space = SearchSpace(channels=channels)
    eager = TrainingStep(space, 1, "fast", "soft", seed=0)
    compiled = TrainingStep(space, 1, "fast", "soft", seed=0)
    compiled.net = torch.compile(compiled.net)
    data = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 1, image, image, generator=data)
    y = torch.randint(0, 10, (BATCH,), generator=data)
    start = time.perf_counter()
    compiled(x, y)
    first = time.perf_counter() - start
    eager(x, y)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.steps):
        for name, step in (("eager", eager), ("compiled", compiled)):
            start = time.perf_counter()
            step(x, y)
            times[name].append(time.perf_counter() - start)
    eager_s, compiled_s = (statistics.median(times[k]) for k in ("eager", "compiled"))
    print(f"{args.shape}, {args.threads} thread(s): compiled first step {first:.1f} s; "
          f"median step eager {eager_s * 1e3:.1f} ms, compiled {compiled_s * 1e3:.1f} ms "
          f"(compiled / eager speed {eager_s / compiled_s:.2f}x)")


if __name__ == "__main__":
    main()
