"""The network layouts a study's search space can produce (every value of its cells /
nodes / channels, tuned ones enumerated): what ``hpo profile`` measures a latency table
for."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from hpo.grid import whole_range
from search_core.errors import ConfigError

if TYPE_CHECKING:
    from hpo.study_spec import StudySpec
    from search_core.network_parts import NetworkLayout

SPACE_PARAMS = ("cells", "nodes", "channels")
MAX_SPACE_VARIANTS = 16


def _space_values(spec: StudySpec) -> dict[str, list[Any]]:
    """Every value a study can give cells / nodes / channels (tuned ones enumerated)."""
    values: dict[str, list[Any]] = {}
    for name in SPACE_PARAMS:
        param = spec.params.get(name)
        if param is None:
            continue
        if (whole := whole_range(param)) is not None:
            values[name] = whole
        else:
            raise ConfigError(f"params.{name}: a float range cannot be profiled; make it an "
                              "int or categorical parameter")
    return values


def study_layouts(spec: StudySpec) -> list[NetworkLayout]:
    """The network layouts a study's trials can build (one per space variant)."""
    from hpo.study_config import build_search_config
    from search_core.data import data_shape
    from search_core.network_parts import network_layout

    values = _space_values(spec)
    combos = [dict(zip(values, combo)) for combo in itertools.product(*values.values())]
    if len(combos) > MAX_SPACE_VARIANTS:
        raise ConfigError(f"the study tunes {', '.join(values)} over {len(combos)} space "
                          f"variants; profile at most {MAX_SPACE_VARIANTS} (narrow the ranges "
                          "or profile a study file with fixed values)")
    layouts = []
    for combo in combos:
        config = build_search_config(spec, combo)
        in_channels, image, classes = data_shape(config.data.name)
        layouts.append(network_layout(config.space, in_channels, image, classes))
    return layouts
