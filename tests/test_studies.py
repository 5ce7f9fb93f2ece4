"""The shipped study files parse, validate and say what the issue promises."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hpo_helpers import Hpo, time_limit

from hpo.grid import grid_cells
from hpo.shipped import default_study
from hpo.study import load_study
from hpo.study_spec import StudyError
from search_core.config import SearchConfig
from search_core.data import DataSplits
from search_core.engine import EpochLosses, divergence, search
from search_core.errors import DivergenceError

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.yaml"))


# studies that reproduce one configuration of docs/results.md (a one-cell grid: its seeds
# differ, not its parameters)
ONE_CONFIGURATION = {"fashion-mnist-exp1-full"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_shipped_study_validates_and_has_a_grid(path: Path) -> None:
    spec = load_study(path)
    assert spec.name == path.stem
    assert spec.params, "a study tunes something"
    cells = grid_cells(spec)
    least = 1 if path.stem in ONE_CONFIGURATION else 2
    assert len(cells) == len({tuple(sorted(c.items())) for c in cells}) >= least


def test_default_study_is_digits_with_the_seed_experiment_1_ops() -> None:
    spec = load_study(None)
    assert Path(spec.source) == default_study()
    assert spec.data["name"] == "digits"
    assert set(spec.search["space"]["ops"]) == {"max_pool_3x3", "skip_connect", "sep_conv_3x3"}
    assert spec.objective.kind == "hypervolume"


def test_seed_experiments_are_shipped() -> None:
    by_data = {load_study(p).data.get("name"): load_study(p) for p in STUDIES}
    assert {"digits", "fashion-mnist", "cifar10"} <= set(by_data)
    five_ops = load_study(next(p for p in STUDIES if p.stem == "fashion-mnist-exp2"))
    assert len(five_ops.search["space"]["ops"]) == 5
    assert five_ops.epochs == 20


# ---------------------------------------------------------------------------------------------
# hostile and absurd study files (issue 12): each is a StudyError of one short line that names
# the file and the key, found fast, without expanding or building anything absurd

TINY = Path(__file__).resolve().parent / "studies" / "tiny.yaml"
TINY_TEXT = TINY.read_text()
TINY_PARAMS = yaml.safe_load(TINY_TEXT)["params"]


def tiny_with(key: str, value: Any) -> dict[str, Any]:
    """tiny.yaml with dotted ``key`` set to ``value``."""
    raw = yaml.safe_load(TINY_TEXT)
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def refused(path: Path, *words: str) -> str:
    """The StudyError message for ``path``: one line, <= 300 characters, naming the file and
    each of ``words``."""
    with time_limit(60), pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message and len(message) <= 300, message
    assert path.name in message.split(":")[0], message
    for word in words:
        assert word in message, (word, message)
    return message


def write(tmp_path: Path, text: str | bytes | dict[str, Any]) -> Path:
    path = tmp_path / "study.yaml"
    if isinstance(text, dict):
        text = yaml.safe_dump(text, sort_keys=False)
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


ABSURD_VALUES = [
    pytest.param("search.space.cells", 100_000, ["space.cells", "64"], id="cells-1e5"),
    pytest.param("search.space.nodes", 100_000, ["space.nodes", "16"], id="nodes-1e5"),
    pytest.param("search.space.channels", 10**23, ["space.channels", "4096"], id="channels-1e23"),
    pytest.param("fidelity.epochs", 10**20, ["train.epochs", "100000"], id="epochs-1e20"),
    pytest.param("search.train.batch_size", 10**6, ["train.batch_size"], id="batch-1e6"),
    pytest.param("search.train.s_draws", 10**5, ["train.s_draws"], id="s-draws-1e5"),
    pytest.param("search.hypernet", {"num_refs": 10**9}, ["hypernet.num_refs", "4096"],
                 id="num-refs-1e9"),
    pytest.param("probes.lattice_divisions", 100_000, ["probes.lattice_divisions"],
                 id="lattice-divisions-1e5"),
    pytest.param("probes.lattice_divisions", 100, ["probes.lattice_divisions", "5000"],
                 id="lattice-over-5000-points"),
    pytest.param("data.seed", -1, ["data.seed", "2**32"], id="data-seed-negative"),
    pytest.param("data.seed", 2**32, ["data.seed", "2**32"], id="data-seed-2-to-32"),
    pytest.param("params.num_refs", {"type": "int", "low": 2, "high": 8, "step": 0.5},
                 ["params.num_refs", "step"], id="int-step-half"),
    pytest.param("objective.reference_accuracy", float("inf"),
                 ["objective.reference_accuracy"], id="reference-accuracy-inf"),
    pytest.param("objective.reference_complexity", float("nan"),
                 ["objective.reference_complexity"], id="reference-complexity-nan"),
    pytest.param("search.train.w_lr", float("inf"), ["train.w_lr", "finite"], id="w-lr-inf"),
    pytest.param("params.kappa", {"low": 0.1, "high": 1.0}, ["params.kappa", "type"],
                 id="param-without-type"),
    pytest.param("params.schedule", {"type": "categorical", "choices": [{"a": 1}, {"b": 2}]},
                 ["params.schedule", "choices"], id="dict-choices"),
    pytest.param("params.schedule", [["linear"], ["cosine"]], ["params.schedule", "choices"],
                 id="list-choices"),
    pytest.param("params.schedule", ["cosine", "gaussian", "linear"],
                 ["params.schedule", "gaussian"], id="middle-choice-invalid"),
    pytest.param("search.train", "fast", ["search.train", "mapping"], id="train-not-a-mapping"),
    pytest.param("search.space", [1, 2], ["space", "mapping"], id="space-not-a-mapping"),
    pytest.param("params", {**TINY_PARAMS, "train.kappa": {"type": "float", "low": 0.1,
                                                           "high": 1.0}},
                 ["params.train.kappa", "params.kappa"], id="two-params-one-setting"),
    pytest.param("grid.schedule", ["linear", "cosine"] * 10, ["grid", "100000"],
                 id="grid-too-big"),
]


@pytest.mark.parametrize(("key", "value", "words"), ABSURD_VALUES)
def test_absurd_value_is_a_one_line_study_error(
    tmp_path: Path, key: str, value: Any, words: list[str]
) -> None:
    raw = tiny_with(key, value)
    if key == "grid.schedule":  # 20 values of each of 4 grid parameters: 160,000 cells
        for name in ("kappa", "t_start", "t_end"):
            raw["grid"][name] = [raw["grid"][name][0]] * 20
    refused(write(tmp_path, raw), *words)


HOSTILE_TEXTS = [
    pytest.param(b"name: tiny\n\xff\xfe\x00bad", ["UTF-8"], id="not-utf8"),
    pytest.param("name: tiny\nsearch: " + "[" * 5000 + "]" * 5000 + "\n", ["nest"],
                 id="nested-5000-deep"),
    pytest.param("name: tiny\nsearch: " + "[" * 40 + "]" * 40 + "\n", ["nested", "32"],
                 id="nested-40-deep"),
    pytest.param("name: tiny\nsearch:\n" + "".join(f"{'  ' * i}a{i}:\n" for i in range(1, 60)),
                 ["nested"], id="block-nested-60-deep"),
    pytest.param(TINY_TEXT + "probes: {seed: false}\n", ["duplicate key", "probes"],
                 id="duplicate-top-level-key"),
    pytest.param(TINY_TEXT.replace("  seed: 0\n", "  seed: 0\n  seed: 1\n", 1),
                 ["duplicate key", "seed"], id="duplicate-nested-key"),
    pytest.param("name: tiny\nsearch: {space: {1: 2, foo: 3}}\n", ["key 1", "quote"],
                 id="mixed-key-types"),
    pytest.param(TINY_TEXT.replace("name: tiny", "name: tiny\n? [a, b]\n: 1"), ["key", "quote"],
                 id="list-as-key"),
    pytest.param(TINY_TEXT.replace("seed: 0", "seed: &s 0").replace("epochs: 1", "epochs: *s"),
                 ["aliases"], id="alias"),
    pytest.param("name: tiny\ndata: {<<: {name: digits}}\n", ["merge keys"], id="merge-key"),
    pytest.param("name: tiny\nfidelity: {epochs: " + "9" * 5000 + "}\n", ["integer"],
                 id="5000-digit-integer"),
    pytest.param("name: tiny\nfidelity: {epochs: !!float abc}\n", ["tags"],
                 id="bad-float-tag"),
    pytest.param("name: tiny\nfidelity: {epochs: !!int ''}\n", ["tags", "line 2"],
                 id="empty-int-tag"),
    pytest.param("name: tiny\nfidelity: {epochs: !!bool maybe}\n", ["tags"], id="bad-bool-tag"),
    pytest.param("name: tiny\nx: !!python/object/apply:os.system [echo]\n", ["tags"],
                 id="python-tag"),
    pytest.param("name: tiny\ndata: {name: 2001-02-30}\n", ["cannot read"], id="bad-date"),
    pytest.param("name: tiny\ngrid: {kappa: [" + "0.3, " * 60_000 + "]}\n", ["50000"],
                 id="60000-values"),
    pytest.param("name: tiny\nparams:\n" + "".join(f"  p{i}: [1]\n" for i in range(65)),
                 ["params", "64"], id="65-params"),
    pytest.param("name: tiny\nsearch: {space: {ops: [" + "x" * 100_000 + ", skip_connect]}}\n",
                 ["space.ops", "valid names"], id="100-kb-value"),
]


@pytest.mark.parametrize(("text", "words"), HOSTILE_TEXTS)
def test_hostile_text_is_a_one_line_study_error(
    tmp_path: Path, text: str | bytes, words: list[str]
) -> None:
    refused(write(tmp_path, text), *words)


def test_billion_laughs_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = write(tmp_path, "name: tiny\nsearch:\n" + "".join(f"  {x}\n" for x in lines))
    started = time.perf_counter()
    refused(path, "aliases", "line 3")
    assert time.perf_counter() - started < 5


def test_over_1_mib_is_refused_unparsed(tmp_path: Path) -> None:
    path = write(tmp_path, TINY_TEXT + "# padding\n" * 120_000)  # valid YAML, 1.2 MB
    refused(path, "1024 KiB")


def test_folder_and_missing_file_are_study_errors(tmp_path: Path) -> None:
    refused(tmp_path, "a folder", "--study")
    refused(tmp_path / "none.yaml", "not found")


@pytest.mark.slow
def test_latency_table_folder_is_a_study_error(tmp_path: Path) -> None:
    raw = tiny_with("search.train", {"op_costs": "latency", "latency_table": str(tmp_path)})
    refused(write(tmp_path, raw), "latency_table", "a folder")


def test_long_path_and_long_key_keep_the_message_short(tmp_path: Path) -> None:
    folder = tmp_path / ("d" * 200)
    folder.mkdir()
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(tiny_with("search.train." + "k" * 5000, 1)))
    with pytest.raises(StudyError) as info:
        load_study(path)
    message = str(info.value)
    assert len(message) <= 300 and "\n" not in message
    assert "study.yaml" in message and "train.kkk" in message


def test_bounds_at_their_limits_are_accepted(tmp_path: Path) -> None:
    raw = tiny_with("data.seed", 2**32 - 1)
    raw["search"]["space"].update(cells=64, nodes=16, channels=4096)
    raw["search"]["train"].update(epochs=100_000, batch_size=65_536, s_draws=1024)
    raw["search"]["hypernet"] = {"placement": "lattice", "num_refs": 4096}
    raw["fidelity"]["epochs"] = 100_000
    raw["probes"]["lattice_divisions"] = 97  # C(99, 2) = 4851 points of 3 ops
    raw["objective"].update(reference_accuracy=1.0, reference_complexity=1e9)
    spec = load_study(write(tmp_path, raw))
    assert spec.epochs == 100_000 and spec.data["seed"] == 2**32 - 1


def test_hpo_run_with_a_folder_as_study_exits_2_with_one_line(cli: Hpo, tmp_path: Path) -> None:
    result = cli.run(study=tmp_path)
    assert result.code == 2
    (line,) = result.err_lines
    assert line.startswith("hpo run: error:") and "a folder" in line
    assert cli.nothing_written()


# ---------------------------------------------------------------------------------------------
# divergence: an exploding but finite loss fails the trial with its reason


def test_exploding_finite_loss_raises_divergence_error(tiny_config: SearchConfig,
                                                       tiny_data: DataSplits) -> None:
    config = tiny_config.replace(train=dataclasses.replace(tiny_config.train, w_lr=1e6))
    with pytest.raises(DivergenceError, match=r"diverged at epoch 0: mean cross-entropy"):
        search(config, tiny_data)


@pytest.mark.parametrize(
    ("epoch", "diverged"),
    [
        (EpochLosses(mean_ce=23.2, accuracy=0.5, previous_ce=None), True),  # > 10x 2.31
        (EpochLosses(mean_ce=22.9, accuracy=0.5, previous_ce=None), False),
        (EpochLosses(mean_ce=float("nan"), accuracy=0.1, previous_ce=None), True),
        (EpochLosses(mean_ce=float("inf"), accuracy=0.1, previous_ce=2.0), True),
        # at chance, above chance's loss and not decreasing: stopped learning
        (EpochLosses(mean_ce=2.5, accuracy=0.11, previous_ce=2.4), True),
        (EpochLosses(mean_ce=2.5, accuracy=0.11, previous_ce=2.5), True),
        (EpochLosses(mean_ce=2.5, accuracy=0.11, previous_ce=None), False),  # first epoch
        (EpochLosses(mean_ce=2.4, accuracy=0.11, previous_ce=2.5), False),  # decreasing
        (EpochLosses(mean_ce=2.5, accuracy=0.13, previous_ce=2.4), False),  # above chance
        (EpochLosses(mean_ce=2.2, accuracy=0.11, previous_ce=2.1), False),  # below ln 10
    ],
)
def test_divergence_policy_on_ten_classes(epoch: EpochLosses, diverged: bool) -> None:
    # chance: ln 10 = 2.303 cross-entropy, 1/10 accuracy; the first minibatch had 2.31
    assert (divergence(epoch, start_ce=2.31, num_classes=10, factor=10.0) is not None) is diverged


def test_divergence_limit_follows_the_first_minibatch_and_the_factor() -> None:
    high_start = EpochLosses(mean_ce=40.0, accuracy=0.5, previous_ce=None)
    assert divergence(high_start, start_ce=5.0, num_classes=10, factor=10.0) is None
    assert divergence(high_start, start_ce=5.0, num_classes=10, factor=4.0) is not None


@pytest.mark.slow
def test_study_policy_divergence_factor_null_keeps_a_finite_exploding_loss(
        tiny_config: SearchConfig, tiny_data: DataSplits) -> None:
    train = dataclasses.replace(tiny_config.train, w_lr=30.0)
    with pytest.raises(DivergenceError, match=r"diverged at epoch 0: mean cross-entropy"):
        search(tiny_config.replace(train=train), tiny_data)
    lenient = dataclasses.replace(train, divergence_factor=None)
    result = search(tiny_config.replace(train=lenient), tiny_data)
    assert result.history[0]["train_ce"] > 10 * 2.303  # what the default policy refused


@pytest.mark.slow
def test_diverging_trial_is_recorded_as_failed_with_the_reason(cli: Hpo) -> None:
    study = cli.write_study(lambda raw: raw["search"]["train"].update(w_lr=1e6))
    cli.run("--trials", 1, "--sampler", "random", study=study)
    trials = cli.trials("tiny")  # failed trials do not count: it tries until --max-failures
    assert trials and all(t.state.name == "FAIL" for t in trials)
    assert all("diverged at epoch 0" in t.user_attrs["fail_reason"] for t in trials)
