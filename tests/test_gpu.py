"""The search on a CUDA GPU: skipped with the reason where torch sees none.

Self-contained (no fixtures from conftest, no Optuna or Ray), so that a GPU machine with
torch alone runs it: ``pytest --noconftest -q tests/test_gpu.py`` (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search_core.config import SearchConfig, SearchSpace, TrainConfig
from search_core.data import DataConfig, load_data
from search_core.engine import search
from search_core.train import TrainRecipe, train_network

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (none visible to torch)")

CONFIG = SearchConfig(space=SearchSpace(cells=3, nodes=2, channels=4),
                      train=TrainConfig(epochs=2, batch_size=32),
                      data=DataConfig(train_limit=200, val_limit=80), threads=1)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_search_and_its_family_run_on_the_gpu(precision: str) -> None:
    data = load_data(CONFIG.data)
    result = search(CONFIG.replace(device="cuda", precision=precision), data)
    assert next(result.supernet.parameters()).is_cuda
    assert result.device["device"].startswith("cuda:") and result.device["device_name"]
    assert all(torch.isfinite(torch.tensor([h["train_loss"] for h in result.history])))
    family = result.family(data)
    assert 0 <= family.hypervolume <= 1


def test_gpu_and_cpu_searches_agree_to_float_tolerance_on_the_first_step() -> None:
    """Same initial weights, batches and Gumbel noise on both devices (drawn on the CPU):
    one epoch of one step gives nearly the same loss."""
    config = CONFIG.replace(train=TrainConfig(epochs=1, batch_size=256))
    data = load_data(config.data)
    cpu = search(config.replace(device="cpu"), data)
    gpu = search(config.replace(device="cuda"), data)
    assert abs(cpu.history[0]["train_loss"] - gpu.history[0]["train_loss"]) < 1e-3


def test_a_gpu_search_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    data = load_data(CONFIG.data)
    config = CONFIG.replace(device="cuda")
    state = tmp_path / "state.pt"

    class Stop(Exception):
        pass

    def stop(m: object) -> None:
        raise Stop

    with pytest.raises(Stop):
        search(config, data, on_epoch=stop, state=state)
    resumed = search(config, data, state=state)
    assert resumed.resumed_from == 1 and len(resumed.history) == 2


def test_a_derived_network_trains_on_the_gpu() -> None:
    data = load_data(CONFIG.data)
    result = search(CONFIG.replace(device="cuda"), data)
    genotype = result.genotype([1 / 3, 1 / 3, 1 / 3])
    trained = train_network(genotype, CONFIG.space, data,
                            TrainRecipe(epochs=1, device="cuda", precision="bf16"))
    assert 0 <= trained.test_acc <= 1
