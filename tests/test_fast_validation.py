"""A study file's mistakes answer at once: one line on stderr and exit 2, before torch (or Ray,
or matplotlib) is imported. The search's config dataclasses, op names, data sets, schedules,
placements and probes, and the compression stages' names and settings, validate without torch;
only building, training and compressing load it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hpo_helpers import TINY, TINY_MULTI, WAIT_S

import hpo.cli

HEAVY = ("torch", "ray", "matplotlib")  # none of these may load before a study-file error
Edit = Callable[[dict[str, Any]], None]


def _rename(section: dict[str, Any], old: str, new: str) -> None:
    section[new] = section.pop(old)


def _piped(stage: dict[str, Any]) -> Edit:
    """A valid pipeline (train, gates, quantise) with ``stage`` written over the stage of
    its name, or over quantise when its name is none of them."""

    def edit(raw: dict[str, Any]) -> None:
        stages = [{"stage": "train", "epochs": 1}, {"stage": "gates", "lam": 0.1},
                  {"stage": "quantise", "bits": 8}]
        names = [s["stage"] for s in stages]
        stages[names.index(stage["stage"]) if stage["stage"] in names else -1] = stage
        raw["pipeline"] = {"probes": ["A", "B"], "stages": stages}

    return edit


# name -> (study it edits, the edit, what its one error line must say)
TYPOS: dict[str, tuple[Path, Edit, str]] = {
    "top-level key": (TINY, lambda d: _rename(d, "fidelity", "fidelty"),
                      "unknown top-level key(s) fidelty (did you mean fidelity?)"),
    "search.train key": (TINY, lambda d: d["search"]["train"].update(epochz=3),
                         "search: unknown key(s) train.epochz (did you mean epochs?)"),
    "search section": (TINY, lambda d: _rename(d["search"], "space", "spaces"),
                       "search: unknown key(s) spaces (did you mean space?)"),
    "op name": (TINY, lambda d: d["search"]["space"].update(ops=["max_pool_3x3", "sep_conv_3x4"]),
                "space.ops: unknown op 'sep_conv_3x4'; valid names: avg_pool_3x3"),
    "data set": (TINY, lambda d: d["data"].update(name="fashion_mnist"),
                 "data.name: unknown data set 'fashion_mnist'; valid names: cifar10, digits"),
    "schedule": (TINY, lambda d: d["search"].update(temperature={"schedule": "linaer"}),
                 "temperature.schedule: unknown temperature schedule 'linaer'"),
    "placement": (TINY, lambda d: d["params"].update(
                      placement={"type": "categorical", "choices": ["lattice", "latice"]}),
                  "hypernet.placement: unknown reference-point placement 'latice'"),
    "params key": (TINY, lambda d: _rename(d["params"]["t_start"], "low", "lo"),
                   "params.t_start: unknown key(s) params.t_start.lo (did you mean low?)"),
    "params type": (TINY, lambda d: d["params"]["kappa"].update(type="flot"),
                    "params.kappa.type: got 'flot'; expected one of 'float', 'int'"),
    "grid key": (TINY, lambda d: _rename(d["grid"], "kappa", "kapa"),
                 "grid.kapa: not declared under params (did you mean kappa?)"),
    "device": (TINY, lambda d: d.update(device="gpu"),
               "device: got 'gpu'; expected one of auto, cpu, cuda, cuda:N"),
    "probe": (TINY_MULTI, lambda d: d["objective"].update(probe="Z"),
              "objective.probe: 'Z' is not a probe of this study"),
    "pipeline stage": (TINY, _piped({"stage": "quantize", "bits": 8}),
                       "pipeline.stages: unknown compression stage 'quantize' (did you mean "
                       "quantise?); valid names: distill, edge_magnitude, gates, lottery, "
                       "quantise, train"),
    "pipeline setting key": (TINY, _piped({"stage": "gates", "lamb": 0.1}),
                             "unknown key(s) pipeline.gates.lamb (did you mean lam?)"),
    "pipeline setting type": (TINY, _piped({"stage": "quantise", "bits": "eight"}),
                              "pipeline.quantise.bits: got 'eight'; expected int"),
    "pipeline setting value": (TINY, _piped({"stage": "quantise", "bits": 1}),
                               "quantise bits: got (1, 8, 4); need widths in [2, 16]"),
    "pipeline timing key": (TINY, _piped({"stage": "gates", "timing": {"roundz": 5}}),
                            "unknown key(s) pipeline.gates.timing.roundz (did you mean "
                            "rounds?)"),
}


def write_typo(folder: Path, name: str) -> Path:
    """The study of case ``name`` with its typo, as ``folder/<name>.yaml``."""
    base, edit, _ = TYPOS[name]
    raw = copy.deepcopy(yaml.safe_load(base.read_text()))
    edit(raw)
    path = folder / f"{name.replace(' ', '-').replace('.', '-')}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("name", sorted(TYPOS))
def test_a_study_typo_is_one_line_and_exit_2(name: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    study = write_typo(tmp_path, name)
    storage = tmp_path / "x.journal"
    code = hpo.cli.main(["run", "--study", str(study), "--storage", str(storage)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hpo run: error: ") and f"{study.name}: " in err, err
    assert TYPOS[name][2] in err, err
    assert not storage.exists()


def test_ops_are_named_without_torch_and_built_from_its_layers() -> None:
    from search_core import layers
    from search_core.ops import OPS, build_op, op_role

    assert op_role("sep_conv_3x3") == "conv" and op_role("skip_connect") == "identity"
    assert isinstance(build_op("sep_conv_3x3", 4, 1, affine=False), layers.SepConv)
    assert isinstance(build_op("skip_connect", 4, 2, affine=True), layers.FactorizedReduce)
    assert len(OPS.names()) == 9


# stage -> (its module, its function): what the registry's lazy entry runs
STAGE_FUNCTIONS = {"train": ("finetune", "train"), "distill": ("distill", "distill"),
                   "edge_magnitude": ("gates", "edge_magnitude"), "gates": ("gates", "gates"),
                   "lottery": ("lottery", "lottery"), "quantise": ("quantise", "quantise")}


def test_stages_are_registered_without_torch_and_run_from_their_modules(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from compress.stages import STAGES

    assert STAGES.names() == ["distill", "train", "edge_magnitude", "gates", "lottery",
                              "quantise"]
    for name, (module, function) in STAGE_FUNCTIONS.items():
        monkeypatch.setattr(importlib.import_module(f"compress.{module}"), function,
                            lambda *args, name=name: ("ran", name, args))
        assert STAGES.get(name).run(1, 2, 3, 4) == ("ran", name, (1, 2, 3, 4))


DRIVER = """
import contextlib, io, json, sys
from hpo.cli import main
heavy, found = {heavy!r}, {{}}
for name, study in {studies!r}.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(["run", "--study", study, "--storage", "x.journal"])
        except SystemExit as exit:
            code = exit.code
    found[name] = [code, err.getvalue(), [m for m in heavy if m in sys.modules]]
print(json.dumps(found))
"""


def run_python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=WAIT_S, check=True)
    return done.stdout


@pytest.mark.slow
def test_every_study_typo_answers_before_torch_ray_or_matplotlib(tmp_path: Path) -> None:
    studies = {name: write_typo(tmp_path, name).name for name in TYPOS}
    found = json.loads(run_python(DRIVER.format(heavy=HEAVY, studies=studies), tmp_path))
    for name, (code, err, loaded) in found.items():
        assert code == 2, (name, err)
        assert len(err.splitlines()) == 1 and TYPOS[name][2] in err, (name, err)
        assert loaded == [], f"{name}: {loaded} imported before the error"
    assert not (tmp_path / "x.journal").exists()


@pytest.mark.slow
def test_python_m_hpo_run_answers_a_typo_in_one_line(tmp_path: Path) -> None:
    study = write_typo(tmp_path, "search.train key")
    done = subprocess.run([sys.executable, "-m", "hpo", "run", "--study", study.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"hpo run: error: {study.name}: search: unknown key(s) train.epochz (did you mean "
        "epochs?); valid keys: a_lr, a_weight_decay, batch_size, cost_uses_temperature, "
        "divergence_factor, epochs, grad_clip, gumbel_per_example, kappa, latency_table, mode, "
        "op_costs, optimizer, s_draws, w_lr, w_momentum, w_weight_decay"]
    assert list(tmp_path.iterdir()) == [study]  # nothing written


CONFIG_WITHOUT_TORCH = """
import json, sys
import search_core.config
from search_core import ConfigError, DataConfig, SearchConfig, seed_probes
tree = {{"space": {{"ops": ["max_pool_3x3", "skip_connect", "sep_conv_3x3"], "cells": 3}},
        "train": {{"epochs": 2, "batch_size": 64}}, "temperature": {{"schedule": "cosine"}},
        "hypernet": {{"placement": "lattice", "num_refs": 4}},
        "data": {{"name": "fashion-mnist", "train_limit": 100}},
        "seed": 0, "device": "cuda:0", "precision": "bf16"}}
config = SearchConfig.from_dict(tree)
assert SearchConfig.from_dict(config.to_dict()) == config
assert config.data == DataConfig(name="fashion-mnist", train_limit=100)
assert [p.name for p in seed_probes(config.space.ops)] == ["A", "B", "C", "D"]
try:
    SearchConfig.from_dict({{**tree, "space": {{"ops": ["max_pool_3x3", "nope"]}}}})
except ConfigError as err:
    assert "unknown op 'nope'" in str(err), err
before = [m for m in {heavy!r} if m in sys.modules]
from search_core import search  # the search itself: now torch
print(json.dumps([before, "torch" in sys.modules]))
"""


PIPELINE_WITHOUT_TORCH = """
import json, sys
from compress import STAGES, FitSettings
from compress.settings import QuantiseSettings
from hpo.pipeline import parse_pipeline, stage_settings
spec = parse_pipeline({{"probes": ["A"], "stages": [{{"stage": name}} for name in STAGES]}})
built = dict(stage_settings(spec, {{"pipeline.quantise.bits": 4,
                                    "pipeline.gates.fit.epochs": 2}}))
assert built["quantise"] == QuantiseSettings(bits=4)
assert built["gates"].fit == FitSettings(epochs=2)
assert {{n: type(s) for n, s in built.items()}} == {{n: STAGES.get(n).settings for n in STAGES}}
before = [m for m in {heavy!r} if m in sys.modules]
from compress import Context  # what a stage runs with: now torch
print(json.dumps([before, "torch" in sys.modules]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("script", "what"), [(CONFIG_WITHOUT_TORCH, "the config"),
                                              (PIPELINE_WITHOUT_TORCH, "the stages' settings")])
def test_the_settings_build_without_torch_which_comes_when_needed(
        tmp_path: Path, script: str, what: str) -> None:
    """The search config and the pipeline's stage settings build and check without torch;
    the search and a stage's context then reach it."""
    before, torch_after = json.loads(run_python(script.format(heavy=HEAVY), tmp_path))
    assert before == [], f"{before} imported by {what} alone"
    assert torch_after  # the lazy names still reach torch
