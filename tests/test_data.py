"""Tests for search_core.data: file readers, loaders, splits, normalisation, config errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import search_core.data
from search_core.data import (
    DATASET_SHAPES,
    DATASETS,
    DataConfig,
    DataSplits,
    data_shape,
    load_data,
    read_cifar_batch,
    read_idx,
)
from search_core.errors import ConfigError, DataError

IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, IDX_CODES[big.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + big.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_idx_set(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        write_idx(folder / f"{stem}.gz", array)
    return arrays


def write_cifar_batch(path: Path, n: int, rng: np.random.Generator) -> None:
    batch = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": [int(v) for v in np.arange(n) % 10],
    }
    path.write_bytes(pickle.dumps(batch))


def assert_normalised(splits: DataSplits) -> None:
    x = splits.train.x.double()
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-3)
    for split in (splits.train, splits.val, splits.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64


# ---------------------------------------------------------------- readers


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trip(tmp_path: Path, compress: bool, dtype: str) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a.idx", array, compress))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, array)


def test_read_idx_bad_magic(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(DataError, match="bad-idx1-ubyte"):
        read_idx(bad)


def test_read_idx_wrong_size(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "short", np.zeros((4, 5), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="short"):
        read_idx(path)


def test_read_cifar_batch(tmp_path: Path) -> None:
    write_cifar_batch(tmp_path / "b", 7, np.random.default_rng(0))
    x, y = read_cifar_batch(tmp_path / "b")
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == list(range(7))


def test_read_cifar_batch_corrupt(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="junk"):
        read_cifar_batch(tmp_path / "junk")


# ---------------------------------------------------------------- loaders


@pytest.fixture(autouse=True)
def no_system_data(tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """System data folders (``SYSTEM_DATA_ROOTS``) replaced by an empty one: these tests see
    only the files they write, whatever the machine has installed."""
    system = tmp_path_factory.mktemp("system-datasets")
    monkeypatch.setattr(search_core.data, "SYSTEM_DATA_ROOTS", (system,))
    return system


def test_the_system_package_folder_is_searched_after_the_data_root(
        tmp_path: Path, no_system_data: Path) -> None:
    arrays = write_idx_set(no_system_data / "fashion-mnist")
    splits = load_data(DataConfig(name="fashion-mnist", root=str(tmp_path / "nowhere")))
    np.testing.assert_array_equal(splits.test.y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    write_idx_set(tmp_path / "fashion-mnist", n_train=30)  # the data root comes first
    first = load_data(DataConfig(name="fashion-mnist", root=str(tmp_path), val_fraction=0.2))
    assert len(first.train) + len(first.val) == 30


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Fashion-MNIST is not installed (apt-get install "
                           "dataset-fashion-mnist; .ci/run installs it)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_core.data, "SYSTEM_DATA_ROOTS", (DEBIAN_FASHION_MNIST.parent,))
    monkeypatch.delenv("NAS_HPO_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here: found in the package's folder
    splits = load_data(DataConfig(name="fashion-mnist", train_limit=500, val_limit=100))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (500, 100, 10_000)
    assert splits.train.x.shape[1:] == (1, 28, 28) and splits.num_classes == 10
    counts = np.bincount(splits.test.y.numpy(), minlength=10)
    assert counts.tolist() == [1000] * 10  # the real test split: 1,000 images per class


@pytest.mark.parametrize(
    ("name", "sub"),
    [
        ("mnist", "."),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "fashion-mnist"),
        ("fashion-mnist", "FashionMNIST/raw"),
    ],
)
def test_idx_data_sets(tmp_path: Path, name: str, sub: str) -> None:
    arrays = write_idx_set(tmp_path / sub)
    splits = load_data(DataConfig(name=name, root=str(tmp_path), val_fraction=0.2))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (48, 12, 20)
    assert splits.train.x.shape == (48, 1, 28, 28)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, (28, 28))
    assert data_shape(name) == (splits.in_channels, splits.image_size, splits.num_classes)
    assert_normalised(splits)
    np.testing.assert_array_equal(splits.test.y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    raw_test = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float()[:, None] / 255
    # the test images are the t10k images under one affine map (train mean/std)
    recovered = splits.test.x * (raw_test.std() / splits.test.x.std())
    assert torch.allclose(recovered - recovered.mean(), raw_test - raw_test.mean(), atol=1e-4)
    assert splits.summary()["test"] == 20


def test_plain_idx_files_found(tmp_path: Path) -> None:
    arrays = write_idx_set(tmp_path / "mnist" / "raw")
    for stem, array in arrays.items():
        (tmp_path / "mnist" / "raw" / f"{stem}.gz").unlink()
        write_idx(tmp_path / "mnist" / "raw" / stem, array, compress=False)
    assert len(load_data(DataConfig(name="mnist", root=str(tmp_path))).test) == 20


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx_set(tmp_path / "mnist")
    monkeypatch.setenv("NAS_HPO_DATA", str(tmp_path))
    assert len(load_data(DataConfig(name="mnist")).train) == 48


def test_cifar10(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", 10, rng)
    write_cifar_batch(folder / "test_batch", 10, rng)
    splits = load_data(DataConfig(name="cifar10", root=str(tmp_path)))
    assert splits.train.x.shape == (40, 3, 32, 32)
    assert (len(splits.val), len(splits.test)) == (10, 10)
    assert (splits.in_channels, splits.image_size) == (3, (32, 32))
    assert data_shape("cifar10") == (splits.in_channels, splits.image_size, splits.num_classes)
    assert_normalised(splits)


def test_every_data_set_has_its_shape_without_loading() -> None:
    """The shapes latency profiles use must cover the registry and match what loads."""
    assert set(DATASET_SHAPES) == set(DATASETS.names())
    digits = load_data(DataConfig(name="digits"))
    assert data_shape("digits") == (digits.in_channels, digits.image_size, digits.num_classes)
    with pytest.raises(ConfigError, match="nope"):
        data_shape("nope")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_files(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError) as info:
        load_data(DataConfig(name=name, root=str(tmp_path / "nowhere")))
    message = str(info.value)
    assert "\n" not in message and name in message and "NAS_HPO_DATA" in message
    assert ("apt-get install dataset-fashion-mnist" in message) == (name == "fashion-mnist")
    expected = (
        ["data_batch_1", "test_batch"]
        if name == "cifar10"
        else ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    )
    assert all(f in message for f in expected)


def test_incomplete_idx_folder_lists_files(tmp_path: Path) -> None:
    write_idx_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_data(DataConfig(name="mnist", root=str(tmp_path)))


# ---------------------------------------------------------------- digits and splits


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.reshape(len(x), -1)}


def test_digits_disjoint_and_stratified() -> None:
    splits = load_data(DataConfig())
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797 and splits.image_size == (8, 8) and splits.in_channels == 1
    assert_normalised(splits)
    # digits holds a few duplicated images, so compare row sets allowing that handful
    train, val, test = (_rows(s.x) for s in (splits.train, splits.val, splits.test))
    assert len(train & val) + len(train & test) + len(val & test) <= 5
    for split in (splits.train, splits.val, splits.test):
        freq = np.bincount(split.y.numpy(), minlength=10) / len(split)
        assert np.all(np.abs(freq - 0.1) < 0.02)


def test_digits_test_fraction() -> None:
    splits = load_data(DataConfig(test_fraction=0.3, val_fraction=0.1))
    assert abs(len(splits.test) - 0.3 * 1797) <= 1
    assert abs(len(splits.val) - 0.1 * (1797 - len(splits.test))) <= 1


def test_seeds() -> None:
    a, b = load_data(DataConfig(seed=1)), load_data(DataConfig(seed=1))
    c = load_data(DataConfig(seed=2))
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(a, name).x, getattr(b, name).x)
        assert torch.equal(getattr(a, name).y, getattr(b, name).y)
    assert not torch.equal(a.test.y, c.test.y) or not torch.equal(a.test.x, c.test.x)
    assert _rows(a.val.x) != _rows(c.val.x)


def test_limits() -> None:
    full = load_data(DataConfig())
    splits = load_data(DataConfig(train_limit=100, val_limit=50))
    assert (len(splits.train), len(splits.val)) == (100, 50)
    assert len(splits.test) == len(full.test)
    assert set(splits.train.y.tolist()) == set(range(10))
    assert_normalised(splits)
    assert len(load_data(DataConfig(train_limit=100_000)).train) == len(full.train)


def test_summary_is_json_able() -> None:
    import json

    summary = load_data(DataConfig(val_limit=10)).summary()
    assert json.loads(json.dumps(summary))["val"] == 10
    assert set(summary) == {
        "name",
        "train",
        "val",
        "test",
        "num_classes",
        "in_channels",
        "image_size",
    }


# ---------------------------------------------------------------- config


def test_registry_names() -> None:
    assert {"digits", "mnist", "fashion-mnist", "cifar10"} <= set(DATASETS.names())


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match=r"cifar10.*digits.*fashion-mnist.*mnist"):
        DataConfig(name="imagenet")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": 0.0},
        {"val_fraction": 1.0},
        {"test_fraction": -0.1},
        {"val_fraction": 0.6, "test_fraction": 0.5},
        {"train_limit": 5},
        {"val_limit": 0},
        {"val_fraction": "0.2"},
    ],
)
def test_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        DataConfig(**kwargs)


def test_dict_round_trip() -> None:
    config = DataConfig(name="mnist", root="/x", seed=3, train_limit=20)
    assert DataConfig.from_dict(config.to_dict()) == config
    assert DataConfig.from_dict({"val_fraction": 0.25}).val_fraction == 0.25


def test_from_dict_unknown_key() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        DataConfig.from_dict({"name": "digits", "bogus": 1})
