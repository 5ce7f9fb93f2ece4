"""The outcome of one search: a trained supernet + hypernetwork, i.e. a family of models.

Checkpoints store the config, so ``SearchResult.load(path)`` rebuilds everything. They hold
plain data only (tensors, numbers, strings, lists, dicts) and are read with
``torch.load(weights_only=True)``: a file that would run code when unpickled is refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from search_core.config import SearchConfig
from search_core.discrete import DiscreteNetwork
from search_core.errors import ConfigError, DataError
from search_core.files import write_atomically
from search_core.genotype import Genotype, derive
from search_core.hypernet import HyperNet, build_hypernet
from search_core.supernet import SuperNet, recalibrated_bn

if TYPE_CHECKING:
    from search_core.data import DataSplits
    from search_core.family import FamilyTable
    from search_core.probes import Probe

CHECKPOINT_VERSION = 1


def as_simplex_point(s: Sequence[float] | torch.Tensor, num_ops: int) -> torch.Tensor:
    """Validate a complexity vector: k non-negative entries summing to 1."""
    vec = torch.as_tensor(s, dtype=torch.float32).flatten()
    if vec.numel() != num_ops or bool((vec < 0).any()) or abs(float(vec.sum()) - 1) > 1e-4:
        raise ConfigError(
            f"s = {vec.tolist()}: need {num_ops} non-negative entries summing to 1 "
            "(one penalty per op, in space.ops order)"
        )
    return vec


@dataclass
class SearchResult:
    config: SearchConfig
    supernet: SuperNet
    hypernet: HyperNet
    history: list[dict[str, float]] = field(default_factory=list)
    data_info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    resumed_from: int | None = None  # epochs done before this run resumed them, if it did
    device: dict[str, Any] = field(default_factory=dict)  # where it ran (device_record)

    @property
    def ops(self) -> tuple[str, ...]:
        return self.config.space.ops

    @torch.no_grad()
    def alpha(self, s: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Architecture logits (2, E, k) for complexity vector s (on the CPU)."""
        device = self.hypernet.logits.device
        return self.hypernet(as_simplex_point(s, len(self.ops)).to(device)).cpu()

    def genotype(self, s: Sequence[float] | torch.Tensor) -> Genotype:
        return derive(self.alpha(s), self.config.space)

    def model(
        self, s: Sequence[float] | torch.Tensor, data: DataSplits | None = None
    ) -> DiscreteNetwork:
        """The standalone network for s with the supernet's weights for its chosen ops; with
        ``data``, BN statistics are first recalibrated for that genotype on the train split."""
        genotype = self.genotype(s)
        net = DiscreteNetwork(
            genotype, self.config.space, self.data_info["in_channels"],
            self.data_info["num_classes"],
        )
        if data is None:
            return net.inherit_from(self.supernet).eval()
        device = next(self.supernet.parameters()).device
        with recalibrated_bn(self.supernet, genotype.choice(self.config.space).to(device),
                             data.train.to(device)):
            return net.inherit_from(self.supernet).eval()

    def family(self, data: DataSplits, probes: Sequence[Probe] | None = None,
               **options: Any) -> FamilyTable:
        """Evaluate the family over probes (default: the thesis's A-D plus a lattice)."""
        from search_core.family import evaluate_family

        return evaluate_family(self, data, probes, **options)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "supernet": cpu_state(self.supernet),
            "hypernet": cpu_state(self.hypernet),
            "history": self.history,
            "data_info": self.data_info,
            "seconds": self.seconds,
        }
        return write_atomically(path, payload)

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        payload = load_payload(path, ("config", "supernet", "hypernet", "data_info"))
        config = SearchConfig.from_dict(payload["config"])
        info = payload["data_info"]
        supernet = SuperNet(config.space, info["in_channels"], info["num_classes"])
        supernet.load_state_dict(payload["supernet"])
        hypernet = build_hypernet(config)
        hypernet.load_state_dict(payload["hypernet"])
        return cls(config, supernet.eval(), hypernet, payload["history"], info,
                   payload["seconds"])


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict on the CPU: a checkpoint loads on any machine."""
    return {key: value.cpu() for key, value in module.state_dict().items()}


def load_payload(path: str | Path, keys: Sequence[str]) -> dict[str, Any]:
    """What ``save`` or ``save_model`` wrote, read as data only: never code (no pickle of
    arbitrary objects); anything else is a ``DataError`` naming the file."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a checkpoint written by nas-hpo; refused to load it "
                        f"({first})") from None
    missing = [k for k in keys if not isinstance(payload, dict) or k not in payload]
    if missing or payload.get("version") != CHECKPOINT_VERSION:
        raise DataError(f"{path}: not a nas-hpo checkpoint of version {CHECKPOINT_VERSION} "
                        f"(missing {missing or 'the version'})")
    return payload


def save_model(model: DiscreteNetwork, path: str | Path, **meta: Any) -> Path:
    """Save a derived network with everything needed to rebuild it (genotype, space);
    ``meta``: plain data (numbers, strings, lists, dicts) about where it came from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": CHECKPOINT_VERSION,
        "genotype": model.genotype.to_dict(),
        "space": SearchConfig(space=model.space).to_dict()["space"],
        "in_channels": model.stem[0].in_channels,
        "num_classes": model.classifier.out_features,
        "state_dict": model.state_dict(),
        "meta": meta,
    }
    return write_atomically(path, payload)


def load_model(path: str | Path) -> DiscreteNetwork:
    """A network written by ``save_model`` (read as data only, see ``load_payload``)."""
    payload = load_payload(path, ("genotype", "space", "in_channels", "num_classes",
                                  "state_dict"))
    space = SearchConfig.from_dict({"space": payload["space"]}).space
    net = DiscreteNetwork(
        Genotype.from_dict(payload["genotype"]), space, payload["in_channels"],
        payload["num_classes"],
    )
    net.load_state_dict(payload["state_dict"])
    return net.eval()
