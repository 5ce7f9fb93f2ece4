"""``--device`` / ``--precision`` on the entrances (train recipes, ``python -m search_core``,
``hpo train``, ``hpo export``, ``hpo bench``), and resuming ``python -m search_core``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_SPACE
from hpo_helpers import Hpo

from hpo.cli import main as hpo_main
from search_core.__main__ import STATE_FILE, build_config, parse_args
from search_core.__main__ import main as search_main
from search_core.bench import bench_supernet
from search_core.costs import heaviest_genotype
from search_core.data import DataSplits, load_data
from search_core.engine import EpochMetrics, search
from search_core.errors import ConfigError
from search_core.train import TrainRecipe, train_network

GENOTYPE = heaviest_genotype(TINY_SPACE)
QUICK = TrainRecipe(epochs=1, batch_size=32, threads=1, device="cpu")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


class Interrupted(Exception):
    pass


# ------------------------------------------------------------------ TrainRecipe


@no_cuda
def test_a_cuda_recipe_without_cuda_is_a_one_line_config_error(tiny_data: DataSplits,
                                                              tmp_path: Path) -> None:
    recipe = TrainRecipe(epochs=1, batch_size=32, threads=1, device="cuda")
    checkpoint = tmp_path / "train" / "net.pt"
    with pytest.raises(ConfigError, match="CUDA") as info:
        train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe, checkpoint=checkpoint)
    assert "\n" not in str(info.value)
    assert not checkpoint.parent.exists()  # refused before anything was written


def test_bf16_training_on_the_cpu_gives_finite_accuracies(tiny_data: DataSplits) -> None:
    trained = train_network(GENOTYPE, TINY_SPACE, tiny_data,
                            TrainRecipe(epochs=1, batch_size=32, threads=1, device="cpu",
                                        precision="bf16"))
    assert math.isfinite(trained.history[-1]["train_loss"])
    assert 0.0 <= trained.val_acc <= 1.0 and 0.0 <= trained.test_acc <= 1.0
    assert trained.network is not None
    assert all(p.device.type == "cpu" and p.dtype == torch.float32
               for p in trained.network.parameters())  # weights stay float32, on the CPU


def test_bad_device_names_and_fp16_on_the_cpu_are_refused(tiny_data: DataSplits) -> None:
    with pytest.raises(ConfigError, match=r"^train recipe device: got 'gpu'; expected"):
        TrainRecipe(device="gpu")
    with pytest.raises(ConfigError, match=r"^train recipe precision: got 'fp8'"):
        TrainRecipe(precision="fp8")
    recipe = TrainRecipe(epochs=1, batch_size=32, threads=1, device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe)


def test_recipes_round_trip_with_device_and_precision() -> None:
    recipe = TrainRecipe(device="cuda:1", precision="bf16")
    assert TrainRecipe.from_dict(recipe.to_dict()) == recipe
    old = {k: v for k, v in TrainRecipe().to_dict().items() if k not in ("device", "precision")}
    assert TrainRecipe.from_dict(old) == TrainRecipe()  # a recipe saved before they existed


@pytest.mark.slow
def test_a_checkpoint_from_before_device_and_precision_still_resumes(
        tiny_data: DataSplits, tmp_path: Path) -> None:
    recipe = TrainRecipe(epochs=2, batch_size=32, threads=1, device="cpu")
    whole = train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe)
    checkpoint = tmp_path / "net.pt"
    with pytest.raises(Interrupted):
        train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe, checkpoint=checkpoint,
                      on_epoch=lambda r: _stop_after(r, 0))
    saved = torch.load(checkpoint, weights_only=True)
    assert all(v.device.type == "cpu" for v in saved["net"].values())
    for key in ("device", "precision"):  # as an older version wrote it
        del saved["recipe"][key]
    saved["recipe"]["threads"] = 4  # and on another thread count
    torch.save(saved, checkpoint)
    epochs: list[dict[str, float]] = []
    resumed = train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe, checkpoint=checkpoint,
                            on_epoch=epochs.append)
    assert [r["epoch"] for r in epochs] == [1.0]
    assert resumed.test_acc == whole.test_acc
    with pytest.raises(ConfigError, match="another genotype or recipe"):  # precision counts
        train_network(GENOTYPE, TINY_SPACE, tiny_data,
                      TrainRecipe(epochs=2, batch_size=32, threads=1, device="cpu",
                                  precision="bf16"), checkpoint=checkpoint)


def _stop_after(record: dict[str, float], epoch: int) -> None:
    if record["epoch"] == epoch:
        raise Interrupted


# ------------------------------------------------------------------ python -m search_core

SEARCH_ARGS = ["--epochs", "2", "--channels", "4", "--nodes", "2", "--cells", "3",
               "--threads", "1", "--device", "cpu"]


@pytest.mark.slow
def test_search_main_resumes_from_its_state_and_deletes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    args = parse_args([*SEARCH_ARGS, "--out", str(out)])
    config = build_config(args, threads=1)

    def interrupt(m: EpochMetrics) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):  # a first run killed after its first epoch
        search(config, load_data(config.data), on_epoch=interrupt, state=out / STATE_FILE)
    assert (out / STATE_FILE).exists()
    assert search_main([*SEARCH_ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "resumed after epoch 1" in printed
    assert "epoch   1/2" not in printed and "epoch   2/2" in printed  # epoch 1 not redone
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from"] == 1
    assert summary["device"] == "cpu" and summary["precision"] == "fp32"
    assert not (out / STATE_FILE).exists()
    assert (out / "checkpoint.pt").exists() and (out / "family.csv").exists()


@no_cuda
def test_search_main_with_cuda_missing_is_one_line_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert search_main([*SEARCH_ARGS, "--device", "cuda", "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "CUDA" in line
    assert not out.exists()


# ------------------------------------------------------------------ hpo entrances


def test_hpo_bench_records_device_and_precision(capsys: pytest.CaptureFixture[str]) -> None:
    assert hpo_main(["bench", "supernet", "--channels", "4", "--nodes", "2", "--image", "8",
                     "--batch", "4", "--steps", "2", "--warmup", "1", "--threads", "1",
                     "--precision", "bf16", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["device"], record["precision"]) == ("cpu", "bf16")
    assert record["images_per_s"] > 0
    fp32 = bench_supernet(TINY_SPACE, image=8, batch=4, steps=2, warmup=1, threads=1)
    assert (fp32.device, fp32.precision) == ("cpu", "fp32")  # the defaults: numbers as before


@pytest.fixture
def searched(cli: Hpo) -> Hpo:
    result = cli.run("--trials", 1, "--sampler", "random")
    assert result.code == 0, result.err
    return cli


@no_cuda
def test_hpo_entrances_with_cuda_missing_are_one_line_and_exit_2(
        searched: Hpo, capsys: pytest.CaptureFixture[str]) -> None:
    trained, exported = searched.tmp / "trained", searched.tmp / "g.json"
    calls = {
        "train": searched("train", "tiny", "--probes", "A", "--epochs", 1, "--seeds", 1,
                          "--quiet", "--out", trained, "--device", "cuda"),
        "export": searched("export", "tiny", "--s", "0.2,0.3,0.5", "--out", exported,
                           "--model", searched.tmp / "m.pt", "--device", "cuda"),
    }
    for command, result in calls.items():
        assert result.code == 2, (command, result.err)
        (line,) = result.err_lines
        assert line.startswith(f"hpo {command}: error: --device: cuda") and "CUDA" in line
    assert not trained.exists() and not exported.exists()
    assert not (searched.tmp / "m.pt").exists()
    assert hpo_main(["bench", "supernet", "--channels", "4", "--steps", "1",
                     "--device", "cuda"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("hpo bench: error: --device: cuda") and "CUDA" in line


@pytest.mark.slow
def test_hpo_export_and_train_on_the_cpu_in_bf16(searched: Hpo) -> None:
    exported, model = searched.tmp / "g.json", searched.tmp / "m.pt"
    result = searched("export", "tiny", "--s", "0.2,0.3,0.5", "--out", exported, "--model",
                      model, "--device", "cpu", "--precision", "bf16")
    assert result.code == 0, result.err
    assert 0.0 <= json.loads(exported.read_text())["accuracy"] <= 1.0
    assert model.stat().st_size > 0
    result = searched("train", "tiny", "--probes", "A", "--epochs", 1, "--seeds", 1,
                      "--batch-size", 32, "--quiet", "--out", searched.tmp / "trained",
                      "--device", "cpu", "--precision", "bf16")
    assert result.code == 0, result.err
    summary = json.loads((searched.tmp / "trained" / "trial-0" / "trained.json").read_text())
    assert (summary["recipe"]["device"], summary["recipe"]["precision"]) == ("cpu", "bf16")
