"""Study files (YAML) validated into frozen dataclasses.

A study file declares the data, the fixed search settings, the fidelity, the probes, the
objective and the hyperparameter space (``params``, with an optional explicit ``grid``).
Every error names the file, the key, the value and the fix.

The parser is total and bounded: any file, however malformed or hostile, either becomes a
``StudySpec`` or raises ``StudyError`` with one line of at most ``MESSAGE_CHARS`` characters.
Files over ``MAX_STUDY_BYTES`` are refused unread; YAML nested deeper than ``MAX_DEPTH`` or with
more than ``MAX_NODES`` keys and values, anchors and aliases (a "billion laughs" bomb expands
before anything could check it), explicit tags, merge keys, duplicate keys and non-string keys
are refused while the file is composed. Sizes are bounded by the config dataclasses
(``search_core.config``) and here: ``MAX_PARAMS`` parameters, ``MAX_CHOICES`` choices per
categorical, ``MAX_GRID_CELLS`` explicit grid cells, ``MAX_LATTICE_POINTS`` lattice probes.

Importing this module loads no torch (reports and tools read study files); ``load_study``
of a study that trains does, to validate its settings against ``search_core.config``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

from hpo.objectives import ObjectiveSpec
from hpo.pipeline import PipelineSpec, check_pipeline, is_pipeline_param, parse_pipeline
from search_core.configtools import (
    MESSAGE_CHARS,
    from_mapping,
    one_line,
    short_key,
    shown,
    to_plain,
)
from search_core.device import check_device_name, check_precision
from search_core.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from search_core.config import SearchConfig
    from search_core.family import Probe

# Short names for the settings users tune most; any dotted SearchConfig path works too.
ALIASES = {
    "kappa": "train.kappa",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "w_lr": "train.w_lr",
    "a_lr": "train.a_lr",
    "s_draws": "train.s_draws",
    "optimizer": "train.optimizer",
    "t_start": "temperature.t_start",
    "t_end": "temperature.t_end",
    "schedule": "temperature.schedule",
    "temperature_per": "temperature.per",
    "num_refs": "hypernet.num_refs",
    "placement": "hypernet.placement",
    "bandwidth": "hypernet.bandwidth",
    "cells": "space.cells",
    "nodes": "space.nodes",
    "channels": "space.channels",
}
SECTIONS = ("space", "hypernet", "temperature", "train")
STUDY_KEYS = ("name", "data", "search", "fidelity", "probes", "objective", "params", "grid",
              "training_seed", "pipeline", "device", "precision")
RUN_KEYS = ("device", "precision")  # top-level keys only, never under search:
DEFAULT_STUDY = Path(__file__).resolve().parent.parent / "studies" / "digits.yaml"
MAX_STUDY_BYTES = 1 << 20  # 1 MiB; the shipped studies are about 1 KB
MAX_DEPTH = 32  # nesting levels of YAML collections; the shipped studies use 4
MAX_NODES = 50_000  # keys and values (YAML nodes); the shipped studies have about 100
MAX_INT_CHARS = 100  # an integer literal longer than this is no setting's value
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

    seed: bool = True  # the seed's A-D probes
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
        plain.pop("device")
        if plain["precision"] == "fp32":
            plain.pop("precision")
        if self.pipeline is None:
            plain.pop("pipeline")
        else:
            plain["pipeline"] = self.pipeline.to_dict()
        return plain

    @classmethod
    def from_dict(cls, plain: Mapping[str, Any], source: str = "") -> StudySpec:
        """The study ``to_dict`` wrote (a study's stored settings), parsed again."""
        tree = dict(plain)
        fidelity = dict(tree.pop("fidelity", None) or {})
        if "epochs" in tree:
            fidelity["epochs"] = tree.pop("epochs")
        return parse_study({**tree, "fidelity": fidelity}, source)

    def fingerprint(self) -> str:
        """Hash of the resolved study (what it computes), to refuse a changed file on resume."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_run_settings(spec: StudySpec, device: str | None = None,
                      precision: str | None = None) -> StudySpec:
    """``spec`` with ``--device`` / ``--precision`` in place of the file's (None: keep it).
    The precision is part of the fingerprint: resuming a study in another one is refused."""
    changes: dict[str, Any] = {}
    if device is not None:
        changes["device"] = check_device_name(device, "--device")
    if precision is not None:
        changes["precision"] = check_precision(precision, "--precision")
    return dataclasses.replace(spec, **changes) if changes else spec


def param_path(name: str) -> str:
    """The SearchConfig path a parameter name sets (alias or dotted path)."""
    return ALIASES.get(name, name)


def build_search_config(
    spec: StudySpec, params: Mapping[str, Any], seed: int = 0, where: str = "params"
) -> SearchConfig:
    """The study's fixed ``search`` settings, ``data``, its ``fidelity`` and ``params``.

    A section of ``search`` (``space``, ``train``, ...) that is not a mapping is a
    ``ConfigError`` naming it, like every other bad value."""
    from search_core.config import SearchConfig  # local: importing this module loads no torch

    tree: dict[str, Any] = copy.deepcopy(dict(spec.search))
    try:
        for key in RUN_KEYS:
            if key in tree:
                raise ConfigError(f"search.{key}: set {key} at the top level of the study "
                                  f"file ({key}: {shown(tree[key])}), not under search")
        tree["train"] = {**_section(tree, "train"), "epochs": spec.epochs}
        tree["data"] = dict(spec.data)
        tree["seed"] = seed
        tree["device"], tree["precision"] = spec.device, spec.precision
        settings = {**spec.fidelity.settings(),
                    **{param_path(name): value for name, value in params.items()
                       if not is_pipeline_param(name)}}
        for path, value in settings.items():
            section, _, key = path.partition(".")
            tree[section] = {**_section(tree, section), key: value}
        return SearchConfig.from_dict(tree)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _section(tree: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The settings under ``search.<section>`` (none when absent); they must be a mapping."""
    body = tree.get(section, {})
    if not isinstance(body, Mapping):
        raise ConfigError(f"search.{section}: got {shown(body)}; expected a mapping of "
                          f"settings, e.g. {section}: {{key: value}}")
    return dict(body)


def study_probes(spec: StudySpec, ops: tuple[str, ...]) -> list[Probe]:
    """The probes every trial's family is evaluated on: the seed's A-D and a lattice."""
    from search_core.family import lattice_probes, seed_probes

    probes = seed_probes(ops) if spec.probes.seed else []
    return probes + lattice_probes(len(ops), spec.probes.lattice_divisions)


def load_study(path: str | Path | None = None) -> StudySpec:
    """Read and validate a study file (default: studies/digits.yaml); any problem is a
    ``StudyError`` of one line naming the file, the key and the fix."""
    path = Path(path) if path is not None else DEFAULT_STUDY
    try:
        return parse_study(_parse_yaml(_read_text(path)), source=str(path))
    except ConfigError as err:
        raise StudyError(one_line(f"{_path_label(path)}: {err}", MESSAGE_CHARS)) from None


def _path_label(path: Path, limit: int = 60) -> str:
    text = str(path)
    return text if len(text) <= limit else "..." + text[len(text) - limit + 3:]


def _read_text(path: Path) -> str:
    """The file as text: refused when missing, not a regular file, over ``MAX_STUDY_BYTES``
    (checked before reading it) or not UTF-8."""
    data = _read_bytes(path)
    if len(data) > MAX_STUDY_BYTES:
        raise ConfigError(f"larger than {MAX_STUDY_BYTES // 1024} KiB; a study file is a few "
                          "KB of YAML, check that --study names the right file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 text (bad byte at offset {err.start}); save the study "
                          "file as UTF-8") from None


def _read_bytes(path: Path) -> bytes:
    """At most ``MAX_STUDY_BYTES + 1`` bytes of a regular file."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode):
            with path.open("rb") as f:
                return f.read(MAX_STUDY_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("study file not found; pass --study with an existing YAML file "
                          "(see studies/)") from None
    except OSError as err:
        raise ConfigError(f"cannot read the study file ({err.strerror}); check the path "
                          "and its permissions") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError("not a usable path; pass --study the path of a YAML study file")\
            from None
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    raise ConfigError(f"is {kind}; pass --study the path of a YAML study file (see studies/)")


class _Refused(yaml.MarkedYAMLError):
    """Something a study file never needs, refused while the YAML is composed."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _Refusals(Composer, SafeConstructor):
    """Composes and constructs like ``yaml.SafeLoader`` but refuses, before building anything
    from them: anchors and aliases, explicit tags (``!!int ""``, ``!!python/...``: every value
    is what its plain text says), merge keys (``<<``), nesting deeper than ``MAX_DEPTH``, more
    than ``MAX_NODES`` keys and values, duplicate and non-string keys, and integer literals over
    ``MAX_INT_CHARS`` characters."""

    depth = 0
    nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise _Refused("YAML anchors and aliases (&name, *name) are not allowed in study "
                           "files; write each value out", event.start_mark)
        if getattr(event, "tag", None) not in (None, "!"):
            tag = event.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Refused(f"explicit YAML tags ({shown(tag)}) are not allowed in study "
                           "files; write the plain value", event.start_mark)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} keys and values; a study file has about "
                           "100", event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep; a study file needs "
                           "about 4", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
            raise _Refused(f"an integer of {len(node.value)} characters; no setting takes "
                           f"more than {MAX_INT_CHARS}", node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:  # e.g. a 30 February
            raise _Refused(f"cannot read this value ({shown(str(err))}); fix it",
                           node.start_mark) from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _Refused("merge keys (<<) are not allowed in study files; write each "
                               "key out", key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise _Refused(f"key {shown(key)} is not a string ({type(key).__name__}); "
                               "quote it", key_node.start_mark)
            if key in seen:
                raise _Refused(f"duplicate key {shown(key)}; keep one of them",
                               key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


if yaml.__with_libyaml__:  # libyaml's events, about 4 times faster than PyYAML's own

    class _StudyLoader(_Refusals, CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:

    class _StudyLoader(_Refusals, yaml.SafeLoader):  # type: ignore[no-redef]
        pass


def _parse_yaml(text: str) -> Any:
    loader = None
    try:
        loader = _StudyLoader(text)  # checks that every character may appear in YAML
        return loader.get_single_data()
    except _Refused as err:
        raise ConfigError(f"line {err.problem_mark.line + 1}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        context = getattr(err, "context", None)
        problem = f"{context}: {problem}" if context else problem
        if isinstance(err, yaml.reader.ReaderError):  # a control character, say
            char = err.character
            code = f"U+{char:04X}" if isinstance(char, int) else shown(char)
            problem = f"character {code} at offset {err.position} cannot appear in YAML"
        raise ConfigError(f"not valid YAML{where} ({problem[:120]}); fix the syntax") from None
    finally:
        if loader is not None:
            loader.dispose()


def parse_study(raw: Any, source: str = "") -> StudySpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {type(raw).__name__}; "
                          "start from studies/digits.yaml")
    top = dict(raw)
    unknown = sorted(set(map(short_key, top)) - set(STUDY_KEYS))
    if unknown:  # checked here: StudySpec's own fields (epochs, source) are not file keys
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown[:3])}"
                          f"{did_you_mean(unknown[0], STUDY_KEYS)}; valid keys: "
                          f"{', '.join(STUDY_KEYS)}")
    params = _parse_params(top.pop("params", {}) or {})
    grid = _parse_grid(top.pop("grid", {}) or {}, params)
    fidelity = _parse_fidelity(top.pop("fidelity", {}) or {})
    pipeline = parse_pipeline(top.pop("pipeline")) if "pipeline" in top else None
    top.setdefault("name", Path(source).stem or "study")
    spec = from_mapping(StudySpec, top)
    check_study_name(spec.name)
    check_device_name(spec.device)
    check_precision(spec.precision)
    spec = StudySpec(**{**spec.__dict__, "fidelity": fidelity, "params": params, "grid": grid,
                        "pipeline": pipeline, "source": source})
    _validate_against_search(spec)
    return spec


def _parse_fidelity(fidelity: Any) -> Fidelity:
    if not isinstance(fidelity, Mapping):
        raise ConfigError(f"fidelity: expected a mapping like {{epochs: 10}}, got "
                          f"{shown(fidelity)}")
    return from_mapping(Fidelity, fidelity, "fidelity")


def _parse_params(raw: Any) -> dict[str, ParamSpec]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"params: expected a mapping name -> range, got {shown(raw)}")
    if len(raw) > MAX_PARAMS:
        raise ConfigError(f"params: {len(raw)} parameters; at most {MAX_PARAMS} are allowed, "
                          "tune fewer settings")
    params = {}
    for name, body in raw.items():
        label = f"params.{short_key(name)}"
        if isinstance(body, list):  # shorthand: a list is a categorical
            body = {"type": "categorical", "choices": body}
        try:
            params[str(name)] = from_mapping(ParamSpec, body, label)
        except ConfigError as err:
            message = str(err)
            prefix = "" if message.startswith(label) else f"{label}: "
            raise ConfigError(prefix + message) from None
    return params


def _parse_grid(raw: Any, params: Mapping[str, ParamSpec]) -> dict[str, tuple[Any, ...]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"grid: expected a mapping name -> list of values, got {shown(raw)}")
    grid = {}
    for name, values in raw.items():
        label = f"grid.{short_key(name)}"
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{label}: got {shown(values)}; expected a non-empty list")
        if name not in params:
            raise ConfigError(f"{label}: not declared under params; declare its range "
                              "there too (the grid must lie inside it)")
        for value in values:
            if not _in_range(params[name], value):
                raise ConfigError(f"{label}: value {shown(value)} lies outside "
                                  f"params.{short_key(name)}")
        grid[str(name)] = tuple(values)
    cells = math.prod(len(values) for values in grid.values())
    if cells > MAX_GRID_CELLS:
        raise ConfigError(f"grid: {cells} combinations; at most {MAX_GRID_CELLS} are allowed, "
                          "list fewer values")
    return grid


def _in_range(spec: ParamSpec, value: Any) -> bool:
    if spec.type == "categorical":
        return value in (spec.choices or ())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if spec.type == "int" and not float(value).is_integer():
        return False
    return spec.low <= value <= spec.high  # type: ignore[operator]


def _validate_against_search(spec: StudySpec) -> None:
    """Build the search config with each parameter at each end of its range (and at each
    choice of a categorical), so that a bad path or an impossible value fails now, not in
    the middle of a study."""
    objective = spec.objective.entry
    if objective.validate is not None:
        objective.validate(spec.objective, tuple(spec.params))
    if not objective.trains:
        return
    config = build_search_config(spec, {}, where="search")
    _check_files(config, "search")
    _check_lattice(spec, len(config.space.ops))
    _check_objective_probe(spec, config.space.ops)
    settings = {path: f"fidelity.{key}" for key, path in FIDELITY_PATHS.items()
                if path in spec.fidelity.settings()}
    _check_pipeline(spec, config.space.ops)
    for name, param in spec.params.items():
        if is_pipeline_param(name):
            continue
        _check_setting(name, settings)
        for value in _values_to_check(param):
            where = f"params.{short_key(name)}={shown(value)}"
            _check_files(build_search_config(spec, {name: value}, where=where), where)
    _check_temperature_order(spec)


def _check_pipeline(spec: StudySpec, ops: tuple[str, ...]) -> None:
    """The pipeline's stages and settings, with each of its parameters at each end."""
    tunable = {n: p for n, p in spec.params.items() if is_pipeline_param(n)}
    if spec.pipeline is None:
        if tunable:
            raise ConfigError(f"params.{next(iter(tunable))}: the study has no pipeline; "
                              "add a pipeline: section with that stage")
        return
    probes = [p.name for p in study_probes(spec, ops)]
    check_pipeline(spec.pipeline, {}, probes)
    for name, param in tunable.items():
        for value in _values_to_check(param):
            check_pipeline(spec.pipeline, {name: value}, probes)


def _check_setting(name: str, settings: dict[str, str]) -> None:
    """``name`` is a tunable setting that nothing else sets (``settings``: path -> the key
    that sets it: the fidelity's, and the parameters checked so far)."""
    path = param_path(name)
    section, _, key = path.partition(".")
    if section not in SECTIONS or not key:
        raise ConfigError(
            f"params.{short_key(name)}: not a tunable setting; use one of "
            f"{', '.join(sorted(ALIASES))} or a dotted path like train.a_lr"
        )
    if path in settings:
        raise ConfigError(f"params.{short_key(name)}: sets {path}, as {settings[path]} does; "
                          "keep one of them")
    settings[path] = f"params.{short_key(name)}"


def _values_to_check(param: ParamSpec) -> list[Any]:
    """Both ends of a range; every choice of a categorical (once per type and value)."""
    if param.type == "categorical":
        return [value for _, value in dict.fromkeys((type(c), c) for c in param.choices or ())]
    return list(param.values_range())


def _check_files(config: Any, where: str) -> None:
    """A latency table that is a folder fails now (a missing one when the study runs)."""
    table = config.train.latency_table
    if table and _is_dir(table):
        raise ConfigError(f"{where}: train.latency_table: {shown(table)} is a folder; give "
                          "the JSON file written by `hpo profile --out FILE`")


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def _check_lattice(spec: StudySpec, num_ops: int) -> None:
    from search_core.placements import lattice_size

    divisions = spec.probes.lattice_divisions
    if divisions is not None and lattice_size(num_ops, divisions) > MAX_LATTICE_POINTS:
        raise ConfigError(
            f"probes.lattice_divisions: {divisions} divisions of {num_ops} ops make "
            f"{lattice_size(num_ops, divisions)} probes; at most {MAX_LATTICE_POINTS} are "
            "allowed, use fewer divisions"
        )


def _check_objective_probe(spec: StudySpec, ops: tuple[str, ...]) -> None:
    """A probe objective must name one of the study's probes (else every trial would fail)."""
    if not spec.objective.entry.reads_probe:
        return
    names = [probe.name for probe in study_probes(spec, ops)]
    if spec.objective.probe not in names:
        listed = ", ".join(names[:8]) + (f", ... ({len(names)} probes)" if names[8:] else "")
        raise ConfigError(f"objective.probe: {shown(spec.objective.probe)} is not a probe of "
                          f"this study; valid: {listed}")


def _check_temperature_order(spec: StudySpec) -> None:
    t_start, t_end = spec.params.get("t_start"), spec.params.get("t_end")
    if not (t_start and t_end) or "categorical" in (t_start.type, t_end.type):
        return
    if t_end.high > t_start.low:  # type: ignore[operator]
        raise ConfigError(
            f"params.t_end: high {t_end.high} > params.t_start low {t_start.low}, so some "
            "trials would get t_end > t_start, which annealing schedules forbid; make the "
            "ranges not overlap"
        )
