"""What a study says, as frozen dataclasses: ``StudySpec`` and its parts (``ParamSpec``,
``Fidelity``, ``ProbeSpec``), the limits they check, study names, and the run settings
(``--device``, ``--precision``) that replace a file's. Reading and validating a file is
``hpo.study``'s; turning a spec into a search's configuration is ``hpo.study_config``'s.
Importing this module loads no torch."""


from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hpo.objectives import ObjectiveSpec
from hpo.pipeline import PipelineSpec
from search_core.configtools import (
    shown,
    to_plain,
)
from search_core.device import check_device_name, check_precision
from search_core.errors import ConfigError

MAX_PARAMS = 64  # tuned parameters (SearchConfig has about 35 settings)
MAX_CHOICES = 256  # choices of one categorical parameter
MAX_GRID_CELLS = 100_000  # combinations of an explicit grid: more trials than anyone runs
MAX_LATTICE_POINTS = 5000  # Das-Dennis lattice probes (each is evaluated on every trial)
SCALARS = (str, int, float, bool, type(None))  # what a categorical choice may be


class StudyError(ConfigError):
    """A study file is malformed; the message names the file, key, value and fix."""


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_study_name(name: str, where: str = "name") -> str:
    """A study name becomes file names (checkpoint folder, lock): letters, digits, '.', '_'
    and '-', at most 100 characters, no '..'."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name) or ".." in name:
        shown = repr(name)[:60]
        raise ConfigError(f"{where}: got {shown}; a study name is 1-100 letters, digits, '.', "
                          "'_' or '-', starting with a letter or digit, without '..'")
    return name


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: float/int range (low, high, log, step) or categorical choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type == "categorical":
            self._check_choices()
        else:
            self._check_range()

    def _check_choices(self) -> None:
        if not self.choices:
            raise ConfigError("choices: a categorical parameter needs a non-empty list")
        if len(self.choices) > MAX_CHOICES:
            raise ConfigError(f"choices: got {len(self.choices)} choices; at most "
                              f"{MAX_CHOICES} are allowed, use an int or float range instead")
        for choice in self.choices:
            if not isinstance(choice, SCALARS):
                raise ConfigError(f"choices: got {shown(choice)}; each choice must be a "
                                  "string, number, true/false or null")

    def _check_range(self) -> None:
        if self.low is None or self.high is None:
            raise ConfigError(f"low/high: a {self.type} parameter needs both low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ConfigError(f"low={self.low}, high={self.high}: need finite low <= high")
        if self.log and self.low <= 0:
            raise ConfigError(f"low={self.low}: a log-scale range needs low > 0")
        if self.log and self.step is not None:
            raise ConfigError("step: cannot be combined with log: true")
        if self.step is not None and not (math.isfinite(self.step) and self.step > 0):
            raise ConfigError(f"step={self.step}: need a finite step > 0")
        if self.type == "int" and not (float(self.low).is_integer()
                                       and float(self.high).is_integer()):
            raise ConfigError(f"low={self.low}, high={self.high}: an int range needs integers")
        if self.type == "int" and self.step is not None and not float(self.step).is_integer():
            raise ConfigError(f"step={self.step}: an int parameter needs a whole-number step "
                              "(e.g. 1 or 2)")

    def values_range(self) -> tuple[Any, Any]:
        """(smallest, largest) value the parameter can take (categorical: sorted choices,
        grouped by type; null sorts first)."""
        if self.type == "categorical":
            ordered = sorted(self.choices or (), key=_choice_order)
            return ordered[0], ordered[-1]
        if self.type == "int":
            return int(self.low), int(self.high)  # type: ignore[arg-type]
        return self.low, self.high


def _choice_order(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, 0 if value is None else value)


@dataclass(frozen=True)
class Fidelity:
    """What one evaluation costs: search epochs and, optionally, a training subset, a
    validation subset and the supernet's width. They override ``data.train_limit``,
    ``data.val_limit`` and ``search.space.channels``, so that one study file states its cost
    in one place and a cheap variant of a study differs from the faithful one only here.
    ``name`` labels the fidelity in records and reports (e.g. ``cpu``)."""

    epochs: int = 10
    train_limit: int | None = None
    val_limit: int | None = None
    channels: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if len(self.name) > 40:
            raise ConfigError(f"fidelity.name: got {shown(self.name)}; at most 40 characters")

    def settings(self) -> dict[str, Any]:
        """The settings this fidelity sets, by their dotted path in the search tree."""
        return {path: getattr(self, key) for key, path in FIDELITY_PATHS.items()
                if getattr(self, key) is not None}


# the fidelity's optional keys and the search setting each one sets
FIDELITY_PATHS = {"train_limit": "data.train_limit", "val_limit": "data.val_limit",
                  "channels": "space.channels"}
MAX_FINETUNE_EPOCHS = 100


@dataclass(frozen=True)
class ProbeSpec:
    """Which architectures of a trial's family are evaluated, and how their accuracy is
    measured: ``proxy`` (the one-hot architecture on the supernet's shared weights, BN
    recalibrated) or ``finetune`` (each distinct genotype trained ``finetune_epochs`` from
    the supernet's weights; slower, closer to training it on its own)."""

    seed: bool = True  # the thesis's A-D probes
    lattice_divisions: int | None = None  # Das-Dennis lattice (None: >= 12 points)
    accuracy: Literal["proxy", "finetune"] = "proxy"
    finetune_epochs: int = 1

    def __post_init__(self) -> None:
        divisions = self.lattice_divisions
        if divisions is not None and not 1 <= divisions < MAX_LATTICE_POINTS:
            raise ConfigError(f"probes.lattice_divisions: got {shown(divisions)}; need 1 <= "
                              f"lattice_divisions < {MAX_LATTICE_POINTS} (or leave it out for "
                              "the default lattice)")
        if not 1 <= self.finetune_epochs <= MAX_FINETUNE_EPOCHS:
            raise ConfigError(f"probes.finetune_epochs: got {shown(self.finetune_epochs)}; "
                              f"need an integer in [1, {MAX_FINETUNE_EPOCHS}]")


NOISE_POLICIES = ("none", "intensify")
MAX_NOISE_SEEDS = 100


@dataclass(frozen=True)
class NoiseSpec:
    """How a search treats a noisy objective (``hpo.intensify``). ``none``: one evaluation
    per configuration (the sampler's best value is the best). ``intensify``: a new
    configuration gets one seed; a challenger competitive with the incumbent on the seeds they
    share gets the incumbent's next seed; the incumbent is the best mean among the
    configurations with the most seeds, takes at least ``min_seeds`` and one more each time a
    challenger catches up with it, up to ``max_seeds``. ``margin``: a challenger whose paired
    mean is at most this much worse than the incumbent's still counts as competitive."""

    policy: Literal["none", "intensify"] = "none"
    min_seeds: int = 2
    max_seeds: int = 5
    margin: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_seeds <= self.max_seeds <= MAX_NOISE_SEEDS:
            raise ConfigError(f"noise: min_seeds {shown(self.min_seeds)} and max_seeds "
                              f"{shown(self.max_seeds)}; need 1 <= min_seeds <= max_seeds <= "
                              f"{MAX_NOISE_SEEDS}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"noise.margin: got {shown(self.margin)}; need a finite number "
                              ">= 0 (0: a challenger must be at least as good on shared seeds)")

    @property
    def intensify(self) -> bool:
        return self.policy == "intensify"


@dataclass(frozen=True)
class StudySpec:
    name: str
    data: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, Any] = field(default_factory=dict)
    fidelity: Fidelity = field(default_factory=Fidelity)
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    # common: every trial searches with the run's --seed (trials differ only by their
    # params); per_trial: a seed derived from --seed and the trial number (hpo.trial)
    training_seed: Literal["common", "per_trial"] = "common"
    pipeline: PipelineSpec | None = None  # compression stages after the search (hpo.pipeline)
    noise: NoiseSpec = field(default_factory=NoiseSpec)  # repeated seeds (hpo.intensify)
    # where trials run (not part of what they compute: left out of the fingerprint, so a
    # study resumes on another machine) and in what precision (part of it)
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    source: str = ""  # path of the study file

    @property
    def epochs(self) -> int:
        return self.fidelity.epochs

    def to_dict(self) -> dict[str, Any]:
        """The resolved study. Settings added after the first release appear only when they
        differ from their defaults, so an older study's fingerprint does not change."""
        plain = to_plain(self)
        plain.pop("source")
        fidelity = plain.pop("fidelity")
        plain["epochs"] = fidelity.pop("epochs")
        extra = {key: value for key, value in fidelity.items() if value not in (None, "")}
        if extra:
            plain["fidelity"] = extra
        for key, default in (("accuracy", "proxy"), ("finetune_epochs", 1)):
            if plain["probes"].get(key) == default:
                plain["probes"].pop(key)
        if plain["objective"].get("path") is None:
            plain["objective"].pop("path", None)
        if plain["training_seed"] == "common":
            plain.pop("training_seed")
        if not self.noise.intensify:  # one evaluation per configuration, as before
            plain.pop("noise")
        plain.pop("device")
        if plain["precision"] == "fp32":
            plain.pop("precision")
        if self.pipeline is None:
            plain.pop("pipeline")
        else:
            plain["pipeline"] = self.pipeline.to_dict()
        return plain

    def fingerprint(self) -> str:
        """Hash of the resolved study (what it computes), to refuse a changed file on resume."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_noise(spec: StudySpec, where: str = "noise.policy") -> None:
    """Intensification compares configurations on the same seeds, by one value."""
    if not spec.noise.intensify:
        return
    if spec.training_seed == "per_trial":
        raise ConfigError(f"{where}: intensify evaluates configurations on the same seeds "
                          "(paired); training_seed per_trial gives every trial its own: leave "
                          "training_seed out (common)")
    if len(spec.objective.directions) != 1:
        raise ConfigError(f"{where}: intensify ranks configurations by one value; objective "
                          f"{spec.objective.kind} has {len(spec.objective.directions)}")


def with_run_settings(spec: StudySpec, device: str | None = None,
                      precision: str | None = None, noise: str | None = None) -> StudySpec:
    """``spec`` with ``--device`` / ``--precision`` / ``--noise`` in place of the file's
    (None: keep it). The precision and the noise policy are part of the fingerprint:
    resuming a study with another one is refused."""
    changes: dict[str, Any] = {}
    if noise is not None:
        if noise not in NOISE_POLICIES:
            raise ConfigError(f"--noise: got {shown(noise)}; expected one of "
                              f"{', '.join(NOISE_POLICIES)}")
        changes["noise"] = dataclasses.replace(spec.noise, policy=noise)
        check_noise(dataclasses.replace(spec, **changes), "--noise")
    if device is not None:
        changes["device"] = check_device_name(device, "--device")
    if precision is not None:
        changes["precision"] = check_precision(precision, "--precision")
    return dataclasses.replace(spec, **changes) if changes else spec


