"""Genotypes: one op *name* per edge and cell type, with a JSON round-trip."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from search_core.config import CELL_TYPES, SearchSpace
from search_core.errors import ConfigError
from search_core.ops import OPS


@dataclass(frozen=True)
class Genotype:
    """``normal[e]`` / ``reduce[e]``: the op on edge e = ``edges[e]`` (from node, to node)."""

    normal: tuple[str, ...]
    reduce: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        for kind in CELL_TYPES:
            ops = getattr(self, kind)
            if len(ops) != len(self.edges):
                raise ConfigError(
                    f"genotype.{kind}: {len(ops)} ops for {len(self.edges)} edges"
                )
            for name in ops:
                OPS.get(name)

    @property
    def nodes(self) -> int:
        return max(j for _, j in self.edges) - 1

    def cell(self, kind: str) -> tuple[str, ...]:
        return self.normal if kind == "normal" else self.reduce

    def op_counts(self) -> dict[str, Counter[str]]:
        """Counts of each op per cell type and in total (both cell types)."""
        counts = {kind: Counter(self.cell(kind)) for kind in CELL_TYPES}
        counts["total"] = counts["normal"] + counts["reduce"]
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            kind: [
                {"from": i, "to": j, "op": op} for (i, j), op in zip(self.edges, self.cell(kind))
            ]
            for kind in CELL_TYPES
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Genotype:
        try:
            edges = tuple((int(e["from"]), int(e["to"])) for e in data["normal"])
            reduce_edges = tuple((int(e["from"]), int(e["to"])) for e in data["reduce"])
            ops = {kind: tuple(str(e["op"]) for e in data[kind]) for kind in CELL_TYPES}
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(
                f"genotype: malformed ({err!r}); expected {{'normal': [{{'from', 'to', 'op'}}, "
                "...], 'reduce': [...]}"
            ) from None
        if reduce_edges != edges:
            raise ConfigError("genotype: normal and reduce cells list different edges")
        return cls(normal=ops["normal"], reduce=ops["reduce"], edges=edges)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"genotype: not valid JSON ({err})") from None
        return cls.from_dict(data)

    def choice(self, space: SearchSpace) -> torch.Tensor:
        """Op indices (2, E) in ``space.ops`` order, for the supernet's hard path."""
        if self.edges != space.edges:
            raise ConfigError(
                f"genotype has {self.nodes} nodes; the search space has {space.nodes}"
            )
        index = {name: m for m, name in enumerate(space.ops)}
        missing = sorted({n for k in CELL_TYPES for n in self.cell(k)} - set(index))
        if missing:
            raise ConfigError(f"genotype uses ops {missing} that are not in space.ops")
        return torch.tensor([[index[n] for n in self.cell(k)] for k in CELL_TYPES])


def derive(alpha: torch.Tensor, space: SearchSpace) -> Genotype:
    """argmax op per edge of alpha (2, E, k) -> genotype with op names."""
    best = alpha.argmax(dim=-1).tolist()
    names = [tuple(space.ops[m] for m in row) for row in best]
    return Genotype(normal=names[0], reduce=names[1], edges=space.edges)
