"""How a latency is measured (``TimingSettings``), without torch: the compression stages'
settings nest it, and a study file's ``timing:`` is checked in a process that never times
anything. The measuring itself is ``search_core.timing``."""

from __future__ import annotations

from dataclasses import dataclass

from search_core.errors import ConfigError


@dataclass(frozen=True)
class TimingSettings:
    """How a latency is measured: ``warmup`` calls, then ``rounds`` timed rounds of as many
    calls as fill ``round_ms``, spread over ``passes`` interleaved passes; the median over
    rounds is the latency."""

    warmup: int = 10
    rounds: int = 35
    round_ms: float = 4.0
    passes: int = 7
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if (self.warmup < 0 or self.rounds < 3 or not self.round_ms > 0 or self.threads < 1
                or not 1 <= self.passes <= self.rounds):
            raise ConfigError(f"timing settings {self}: need warmup >= 0, rounds >= 3, "
                              "round_ms > 0, threads >= 1, 1 <= passes <= rounds")
