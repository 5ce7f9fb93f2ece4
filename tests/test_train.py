"""Training derived networks (search_core/train.py): the recipe, augmentation, learning,
test split kept out, inherited weights and per-epoch resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_SPACE

from search_core.config import SearchConfig
from search_core.costs import heaviest_genotype
from search_core.data import DataSplits
from search_core.errors import ConfigError, DataError
from search_core.result import SearchResult
from search_core.train import TrainRecipe, accuracy, augment, train_network

GENOTYPE = heaviest_genotype(TINY_SPACE)
QUICK = TrainRecipe(epochs=2, batch_size=32, threads=1)


def without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize(("changes", "key"), [
    ({"epochs": 0}, "epochs"), ({"lr": float("nan")}, "lr"), ({"momentum": 1.0}, "momentum"),
    ({"augment": "mixup"}, "augment"), ({"init": "warm"}, "init"), ({"seed": -1}, "seed"),
    ({"grad_clip": 0.0}, "grad_clip"), ({"lr_min_ratio": 2.0}, "lr_min_ratio"),
])
def test_bad_recipes_are_one_line_config_errors(changes: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^train recipe {key}: got .*; need") as info:
        TrainRecipe(**changes)
    assert "\n" not in str(info.value)


def test_recipe_round_trips_and_rejects_unknown_keys() -> None:
    recipe = TrainRecipe(epochs=3, augment="crop_flip", grad_clip=None)
    assert TrainRecipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(ConfigError, match="unknown key"):
        TrainRecipe.from_dict({"epoch": 3})


def test_standard_augmentation_per_data_set() -> None:
    auto = TrainRecipe()
    assert auto.augmentation("cifar10") == (4, True)
    assert auto.augmentation("fashion-mnist") == (2, True)
    assert auto.augmentation("digits") == (0, False)  # a flipped digit is another digit
    assert TrainRecipe(augment="none").augmentation("cifar10") == (0, False)


def test_augment_crops_shift_and_flip_images() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, 0, False, generator), x)
    crops = augment(x, 1, False, generator)
    assert crops.shape == x.shape
    for image, crop in zip(x, crops):  # a window of the zero-padded image
        padded = torch.nn.functional.pad(image, (1, 1, 1, 1))
        windows = [padded[:, i:i + 4, j:j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(crop, w) for w in windows)
    flips = torch.stack([augment(x, 0, True, generator) for _ in range(20)])
    flipped = (flips == x.flip(-1)).flatten(2).all(-1)
    assert flipped.any() and (~flipped).any()  # some images flipped, some not


@pytest.mark.slow
def test_training_learns_and_reports_test_accuracy_once(tiny_data: DataSplits,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = accuracy

    def counting(net: torch.nn.Module, split: object) -> float:
        seen.append(id(split))
        return real(net, split)  # type: ignore[arg-type]

    monkeypatch.setattr("search_core.train.accuracy", counting)
    epochs: list[dict[str, float]] = []
    result = train_network(GENOTYPE, TINY_SPACE, tiny_data,
                           TrainRecipe(epochs=10, batch_size=32, lr=0.1, threads=1),
                           on_epoch=epochs.append)
    assert [h["epoch"] for h in result.history] == list(range(10)) and epochs == result.history
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    assert result.val_acc > 0.5 and result.test_acc > 0.5  # chance is 0.1
    assert seen.count(id(tiny_data.test)) == 1 and seen.count(id(tiny_data.val)) == 10
    assert result.params > result.cell_params > 0
    assert result.to_dict()["recipe"]["lr"] == 0.1


@pytest.mark.slow
def test_same_seed_same_result_another_seed_another(tiny_data: DataSplits) -> None:
    first = train_network(GENOTYPE, TINY_SPACE, tiny_data, QUICK)
    again = train_network(GENOTYPE, TINY_SPACE, tiny_data, QUICK)
    other = train_network(GENOTYPE, TINY_SPACE, tiny_data,
                          TrainRecipe(epochs=2, batch_size=32, threads=1, seed=1))
    assert without_seconds(first.history) == without_seconds(again.history)
    assert without_seconds(first.history) != without_seconds(other.history)


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_last_epoch_with_the_same_result(
        tiny_data: DataSplits, tmp_path: Path) -> None:
    recipe = TrainRecipe(epochs=3, batch_size=32, threads=1, augment="crop_flip")
    whole = train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe)

    def kill_after_first(record: dict[str, float]) -> None:
        if record["epoch"] == 1:
            raise Killed

    checkpoint = tmp_path / "train" / "net.pt"
    with pytest.raises(Killed):
        train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe, checkpoint=checkpoint,
                      on_epoch=kill_after_first)
    resumed_epochs: list[dict[str, float]] = []
    resumed = train_network(GENOTYPE, TINY_SPACE, tiny_data, recipe, checkpoint=checkpoint,
                            on_epoch=resumed_epochs.append)
    assert [r["epoch"] for r in resumed_epochs] == [2]  # epochs 0 and 1 were not redone
    assert without_seconds(resumed.history) == without_seconds(whole.history)
    assert resumed.test_acc == whole.test_acc


@pytest.mark.slow
def test_a_checkpoint_of_another_recipe_is_refused(tiny_data: DataSplits,
                                                   tmp_path: Path) -> None:
    checkpoint = tmp_path / "net.pt"
    train_network(GENOTYPE, TINY_SPACE, tiny_data, QUICK, checkpoint=checkpoint)
    with pytest.raises(ConfigError, match="another genotype or recipe"):
        train_network(GENOTYPE, TINY_SPACE, tiny_data,
                      TrainRecipe(epochs=2, batch_size=32, threads=1, lr=0.1),
                      checkpoint=checkpoint)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a training checkpoint"):
        train_network(GENOTYPE, TINY_SPACE, tiny_data, QUICK, checkpoint=checkpoint)


@pytest.mark.slow
def test_inherited_weights_start_from_the_supernet(tiny_config: SearchConfig,
                                                   tiny_result: SearchResult,
                                                   tiny_data: DataSplits) -> None:
    genotype = tiny_result.genotype([1 / 3, 1 / 3, 1 / 3])
    with pytest.raises(ConfigError, match="needs the search's supernet"):
        train_network(genotype, tiny_config.space, tiny_data, TrainRecipe(init="inherit"))
    one_step = TrainRecipe(epochs=1, batch_size=32, threads=1, lr=1e-9, momentum=0.0,
                           weight_decay=0.0, init="inherit")
    inherited = train_network(genotype, tiny_config.space, tiny_data, one_step,
                              supernet=tiny_result.supernet)
    scratch = train_network(genotype, tiny_config.space, tiny_data,
                            TrainRecipe(epochs=1, batch_size=32, threads=1, lr=1e-9,
                                        momentum=0.0, weight_decay=0.0))
    # with a vanishing learning rate the weights stay where they started (BN statistics move)
    assert inherited.network is not None and scratch.network is not None
    started = dict(inherited.network.stem.named_parameters())
    fresh = dict(scratch.network.stem.named_parameters())
    weights = dict(tiny_result.supernet.stem.named_parameters())
    assert any(w.dim() > 1 for w in weights.values())
    for name, weight in weights.items():
        torch.testing.assert_close(started[name], weight, atol=1e-6, rtol=0)
        if weight.dim() > 1:  # the conv: a fresh initialisation is elsewhere
            assert not torch.allclose(fresh[name], weight)
