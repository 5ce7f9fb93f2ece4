"""Study files (YAML) validated into frozen dataclasses.

A study file declares the data, the fixed search settings, the fidelity, the probes, the
objective and the hyperparameter space (``params``, with an optional explicit ``grid``).
Every error names the file, the key, the value and the fix.

The parser is total and bounded: any file, however malformed or hostile, either becomes a
``StudySpec`` or raises ``StudyError`` with one line of at most ``MESSAGE_CHARS`` characters.
Files over ``MAX_STUDY_BYTES`` are refused unread; the YAML is read by the bounded reader
(``hpo.yaml_file``: depth, size, anchors, tags, merge keys, duplicate and non-string keys
refused while the file is composed). Sizes are bounded by the config dataclasses
(``search_core.config``) and ``hpo.study_spec``: ``MAX_PARAMS`` parameters, ``MAX_CHOICES``
choices per categorical, ``MAX_GRID_CELLS`` explicit grid cells, ``MAX_LATTICE_POINTS``
lattice probes. The file is read in one place, ``_read_bytes``.

Neither importing this module nor ``load_study`` loads torch (reports and tools read study
files, and a typo answers at once), a ``pipeline:`` section included: its stages' settings
are ``compress.settings``, which is torch-free.
"""


from __future__ import annotations

import math
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo.pipeline import check_pipeline, is_pipeline_param, parse_pipeline
from hpo.shipped import study_path, unknown_study_hint, with_shipped_paths
from hpo.study_config import ALIASES, SECTIONS, build_search_config, param_path, study_probes
from hpo.study_spec import (
    FIDELITY_PATHS,
    MAX_GRID_CELLS,
    MAX_LATTICE_POINTS,
    MAX_PARAMS,
    Fidelity,
    NoiseSpec,
    ParamSpec,
    StudyError,
    StudySpec,
    check_noise,
    check_study_name,
)
from hpo.yaml_file import parse_yaml
from search_core.configtools import (
    MESSAGE_CHARS,
    from_mapping,
    one_line,
    short_key,
    shown,
)
from search_core.device import check_device_name, check_precision
from search_core.errors import ConfigError, did_you_mean

STUDY_KEYS = ("name", "data", "search", "fidelity", "probes", "objective", "params", "grid",
              "training_seed", "pipeline", "device", "precision", "noise")
MAX_STUDY_BYTES = 1 << 20  # 1 MiB; the shipped studies are about 1 KB


def load_study(path: str | Path | None = None) -> StudySpec:
    """Read and validate a study file, or a shipped study by name (default: the shipped
    ``digits``); any problem is a ``StudyError`` of one line naming the file, the key and the
    fix."""
    path = study_path(path)
    try:
        raw = with_shipped_paths(parse_yaml(_read_text(path)), path)
        return parse_study(raw, source=str(path))
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
        raise ConfigError(f"study file not found; {unknown_study_hint(path)}") from None
    except OSError as err:
        raise ConfigError(f"cannot read the study file ({err.strerror}); check the path "
                          "and its permissions") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError("not a usable path; pass --study the path of a YAML study file")\
            from None
    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
    raise ConfigError(f"is {kind}; pass --study a YAML study file or a shipped study's name "
                      "(hpo studies list)")




def parse_study(raw: Any, source: str = "") -> StudySpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"expected a mapping at the top level, got {type(raw).__name__}; "
                          "start from a shipped study (hpo studies copy digits)")
    top = dict(raw)
    unknown = sorted(set(map(short_key, top)) - set(STUDY_KEYS))
    if unknown:  # checked here: StudySpec's own fields (epochs, source) are not file keys
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown[:3])}"
                          f"{did_you_mean(unknown[0], STUDY_KEYS)}; valid keys: "
                          f"{', '.join(STUDY_KEYS)}")
    params = _parse_params(top.pop("params", {}) or {})
    grid = _parse_grid(top.pop("grid", {}) or {}, params)
    fidelity = _parse_fidelity(top.pop("fidelity", {}) or {})
    noise = from_mapping(NoiseSpec, top.pop("noise", {}) or {}, "noise")
    pipeline = parse_pipeline(top.pop("pipeline")) if "pipeline" in top else None
    top.setdefault("name", Path(source).stem or "study")
    spec = from_mapping(StudySpec, top)
    check_study_name(spec.name)
    check_device_name(spec.device)
    check_precision(spec.precision)
    spec = StudySpec(**{**spec.__dict__, "fidelity": fidelity, "params": params, "grid": grid,
                        "pipeline": pipeline, "noise": noise, "source": source})
    check_noise(spec)
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
            raise ConfigError(f"{label}: not declared under params{did_you_mean(name, params)};"
                              " declare its range there too (the grid must lie inside it)")
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
    for name, param in spec.params.items():
        if is_pipeline_param(name):
            continue
        _check_setting(name, settings)
        for value in _values_to_check(param):
            where = f"params.{short_key(name)}={shown(value)}"
            _check_files(build_search_config(spec, {name: value}, where=where), where)
    _check_temperature_order(spec)
    _check_pipeline(spec, config.space.ops)


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


def spec_from_dict(plain: Mapping[str, Any], source: str = "") -> StudySpec:
    """The study ``StudySpec.to_dict`` wrote (a study's stored settings), parsed again."""
    tree = dict(plain)
    fidelity = dict(tree.pop("fidelity", None) or {})
    if "epochs" in tree:
        fidelity["epochs"] = tree.pop("epochs")
    return parse_study({**tree, "fidelity": fidelity}, source)
