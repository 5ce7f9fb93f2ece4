"""Image classification data sets: loading from local files, seeded splits, normalisation.

Nothing is downloaded and nothing is loaded at import time. Every loader in ``DATASETS`` maps a
root folder to a ``RawData`` whose images are ``(N, C, H, W)`` arrays with values in
``[0, max_value]``. ``load_data`` carves train/val (and test where there is no official test
split) with seeded stratified splits, applies the optional limits, scales pixels to ``[0, 1]``
and normalises every split with the train split's per-channel mean and standard deviation.
The test split is never mixed into train or val.

Importing this module loads neither torch nor scikit-learn (they are imported by the functions
that load and batch data): ``DataConfig`` checks a study file in a process that never trains.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from search_core.configtools import from_mapping, shown, to_plain
from search_core.errors import ConfigError, DataError
from search_core.registry import Registry

if TYPE_CHECKING:
    import torch

DEFAULT_DATA_ROOT_ENV = "NAS_HPO_DATA"
# where system packages install data sets, searched after the data root: Debian and Ubuntu's
# ``dataset-fashion-mnist`` puts the four IDX files in /usr/share/datasets/fashion-mnist
SYSTEM_DATA_ROOTS = (Path("/usr/share/datasets"),)
MIN_LIMIT = 10
SEED_LIMIT = 2**32  # split seeds lie in [0, 2**32), what numpy's generators accept


@dataclass(frozen=True)
class RawData:
    """Images as ``(N, C, H, W)`` arrays with values in ``[0, max_value]``; labels ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    num_classes: int = 10
    max_value: float = 255.0


LoaderFn = Callable[[Path], RawData]
DATASETS: Registry[LoaderFn] = Registry("data set")

# (in_channels, (height, width), classes) of each data set, known without reading its files:
# latency tables are measured for a data set's input shape on machines that lack the data.
DATASET_SHAPES: dict[str, tuple[int, tuple[int, int], int]] = {
    "digits": (1, (8, 8), 10),
    "mnist": (1, (28, 28), 10),
    "fashion-mnist": (1, (28, 28), 10),
    "cifar10": (3, (32, 32), 10),
}


def data_shape(name: str) -> tuple[int, tuple[int, int], int]:
    """(in_channels, (height, width), classes) of data set ``name``."""
    DATASETS.get(name)  # ConfigError listing the valid names
    return DATASET_SHAPES[name]


@dataclass(frozen=True)
class DataConfig:
    """Which data set to load, where from, and how to split it."""

    name: str = "digits"
    root: str | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ConfigError(f"data.name: unknown data set {shown(self.name)}; valid names: "
                              f"{', '.join(sorted(DATASETS))}")
        for key in ("val_fraction", "test_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ConfigError(f"data.{key}: got {shown(value)}; expected a number in (0, 1)")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction: got "
                f"{self.val_fraction} + {self.test_fraction}; expected a sum below 1"
            )
        for key in ("train_limit", "val_limit"):
            value = getattr(self, key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < MIN_LIMIT
            ):
                raise ConfigError(
                    f"data.{key}: got {shown(value)}; expected null or an integer >= {MIN_LIMIT}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (
            0 <= self.seed < SEED_LIMIT
        ):
            raise ConfigError(f"data.seed: got {shown(self.seed)}; expected an integer in "
                              "[0, 2**32)")

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: Any) -> DataConfig:
        return from_mapping(cls, d, "data")


@dataclass(frozen=True)
class Split:
    """``x``: ``(N, C, H, W)`` float32, normalised; ``y``: ``(N,)`` int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> Split:
        """This split on ``device`` (itself when it is there already)."""
        if self.x.device == device:
            return self
        return Split(self.x.to(device), self.y.to(device))


def batches(split: Split, batch_size: int, generator: torch.Generator | None) -> Iterator[
    tuple[torch.Tensor, torch.Tensor]
]:
    """Minibatches of a split, shuffled by ``generator`` (in order when it is None)."""
    import torch

    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(split.x.device)  # drawn on the CPU: the same batches on every device
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield split.x[index], split.y[index]


@dataclass(frozen=True)
class DataSplits:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": list(self.image_size),
        }

    def to(self, device: torch.device) -> DataSplits:
        """Every split moved to ``device`` once (a data set of these sizes fits in a GPU's
        memory), so minibatches are slices on the device, not copies per step."""
        return replace(self, train=self.train.to(device), val=self.val.to(device),
                       test=self.test.to(device))


def resolve_root(root: str | None) -> Path:
    """``root``, else ``$NAS_HPO_DATA``, else ``./data``."""
    return Path(root or os.environ.get(DEFAULT_DATA_ROOT_ENV) or "data")


def load_data(config: DataConfig) -> DataSplits:
    """Load ``config.name`` from disk and return normalised train/val/test splits."""
    import torch

    raw = DATASETS.get(config.name)(resolve_root(config.root))
    y_all = np.asarray(raw.y_train, dtype=np.int64)
    pool = np.arange(len(y_all))
    if raw.x_test is None or raw.y_test is None:
        pool, test_idx = _split(pool, y_all, config.test_fraction, config.seed)
        x_test, y_test = raw.x_train[test_idx], y_all[test_idx]
    else:
        x_test, y_test = raw.x_test, np.asarray(raw.y_test, dtype=np.int64)
    train_idx, val_idx = _split(pool, y_all[pool], config.val_fraction, config.seed)
    train_idx = _limit(train_idx, y_all[train_idx], config.train_limit, config.seed)
    val_idx = _limit(val_idx, y_all[val_idx], config.val_limit, config.seed)
    x_train = raw.x_train[train_idx].astype(np.float32) / raw.max_value
    mean, std = _channel_stats(x_train)
    norm = _normaliser(mean, std, raw.max_value)
    _, channels, height, width = raw.x_train.shape
    return DataSplits(
        name=config.name,
        train=Split(torch.from_numpy((x_train - mean) / std), torch.from_numpy(y_all[train_idx])),
        val=Split(norm(raw.x_train[val_idx]), torch.from_numpy(y_all[val_idx])),
        test=Split(norm(x_test), torch.from_numpy(np.ascontiguousarray(y_test))),
        num_classes=raw.num_classes,
        in_channels=int(channels),
        image_size=(int(height), int(width)),
    )


def _split(
    idx: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``idx`` into (keep, held_out), stratified by ``y`` where possible."""
    from sklearn.model_selection import train_test_split

    if len(idx) < 2:
        raise DataError(f"cannot split {len(idx)} example(s); the data set is too small")
    try:
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=y)
    except ValueError:  # a class too rare to stratify
        keep, held = train_test_split(idx, test_size=fraction, random_state=seed)
    return np.sort(keep), np.sort(held)


def _limit(idx: np.ndarray, y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """A seeded, stratified-where-possible subset of at most ``limit`` indices."""
    from sklearn.model_selection import train_test_split

    if limit is None or limit >= len(idx):
        return idx
    try:
        kept, _ = train_test_split(idx, train_size=limit, random_state=seed, stratify=y)
    except ValueError:
        kept, _ = train_test_split(idx, train_size=limit, random_state=seed)
    return np.sort(kept)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of ``(N, C, H, W)``, shaped ``(1, C, 1, 1)``; std >= 1e-6."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = x.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def _normaliser(
    mean: np.ndarray, std: np.ndarray, max_value: float
) -> Callable[[np.ndarray], torch.Tensor]:
    import torch

    def apply(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((x.astype(np.float32) / max_value - mean) / std)

    return apply


# ---------------------------------------------------------------- file formats

_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or plain) into a native-endian array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {data[:4].hex()!r})")
    dtype, ndim = np.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(
            f"{path}: IDX size mismatch: shape {shape} needs {expected} bytes, file has {len(data)}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err


# What a CIFAR-10 python batch may name when unpickled: numpy's array reconstruction (as
# pickled by Python 2, which wrote the originals, and by Python 3 at protocols 2-5) and the
# codec Python 3 uses for bytes at protocol 2. Anything else (os.system, eval, ...) is refused.
CIFAR_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused {module}.{name[:60]}: a CIFAR-10 batch holds only arrays and lists")
        return super().find_class(module, name)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 python batch: ``x`` ``(N, 3, 32, 32)`` uint8, ``y`` ``(N,)`` int64.

    The batch is a pickle; it is read by an unpickler that builds only containers and numpy
    arrays (``CIFAR_PICKLE_GLOBALS``), so a crafted file cannot run code.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
        data = np.asarray(_get(batch, "data"), dtype=np.uint8)
        labels = np.asarray(_get(batch, "labels"), dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err!r})") from err
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: bad CIFAR-10 batch: data {data.shape}, labels {labels.shape}; "
            "expected (N, 3072) and (N,)"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _get(batch: Any, key: str) -> Any:
    return batch[key.encode()] if key.encode() in batch else batch[key]


# ---------------------------------------------------------------- loaders

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


SYSTEM_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}  # Debian/Ubuntu packages


def _missing(name: str, searched: Sequence[Path], files: Sequence[str], what: str) -> DataError:
    folders = ", ".join(str(p) for p in searched)
    package = SYSTEM_PACKAGES.get(name)
    install = f" (Debian/Ubuntu: apt-get install {package})" if package else ""
    return DataError(
        f"data set {name!r}: files not found; searched {folders}; expected {', '.join(files)}; "
        f"put {what} in one of these folders or set --data-root / {DEFAULT_DATA_ROOT_ENV}"
        f"{install}"
    )


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_set(name: str, folders: Sequence[Path]) -> RawData:
    for folder in folders:
        paths = [_find_idx(folder, stem) for stem in IDX_FILES]
        if all(p is not None for p in paths):
            x_tr, y_tr, x_te, y_te = (read_idx(p) for p in paths if p is not None)
            _check_pair(paths[0], x_tr, y_tr, ndim=3)
            _check_pair(paths[2], x_te, y_te, ndim=3)
            y_tr, y_te = y_tr.astype(np.int64), y_te.astype(np.int64)
            return RawData(x_tr[:, None], y_tr, x_te[:, None], y_te, num_classes=10)
    raise _missing(name, folders, [f"{s}[.gz]" for s in IDX_FILES], "the four IDX files")


def _check_pair(path: Path | None, x: np.ndarray, y: np.ndarray, ndim: int) -> None:
    if x.ndim != ndim or y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"{path}: images {x.shape} do not match labels {y.shape} "
            f"(expected {ndim}-d images and one label per image)"
        )
    if len(y) and (y.min() < 0 or y.max() >= 10):
        raise DataError(f"{path}: labels outside 0..9 in the matching label file")


def _idx_folders(root: Path, name: str, torchvision_name: str) -> list[Path]:
    """Where the IDX files of ``name`` may be: the data root and its usual sub-folders
    (ours, torchvision's), then the system packages' folders (``SYSTEM_DATA_ROOTS``)."""
    own = [root, root / name, root / name / "raw", root / torchvision_name / "raw"]
    return own + [system / name for system in SYSTEM_DATA_ROOTS if system / name not in own]


@DATASETS.register("mnist")
def load_mnist(root: Path) -> RawData:
    return _load_idx_set("mnist", _idx_folders(root, "mnist", "MNIST"))


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(root: Path) -> RawData:
    return _load_idx_set("fashion-mnist", _idx_folders(root, "fashion-mnist", "FashionMNIST"))


@DATASETS.register("cifar10")
def load_cifar10(root: Path) -> RawData:
    folders = [root / CIFAR_FOLDER, root]
    for folder in folders:
        if all((folder / f).is_file() for f in CIFAR_FILES):
            batches = [read_cifar_batch(folder / f) for f in CIFAR_FILES[:-1]]
            x_test, y_test = read_cifar_batch(folder / CIFAR_FILES[-1])
            x_train = np.concatenate([b[0] for b in batches])
            y_train = np.concatenate([b[1] for b in batches])
            _check_pair(folder / "data_batch_*", x_train, y_train, ndim=4)
            _check_pair(folder / "test_batch", x_test, y_test, ndim=4)
            return RawData(x_train, y_train, x_test, y_test, num_classes=10, max_value=255.0)
    raise _missing("cifar10", folders, CIFAR_FILES, f"the {CIFAR_FOLDER} batches")


@DATASETS.register("digits")
def load_digits(root: Path) -> RawData:
    """scikit-learn's bundled 8x8 digits (values 0..16); ``root`` is unused."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.asarray(bunch.images, dtype=np.float32)[:, None]
    return RawData(x, np.asarray(bunch.target, dtype=np.int64), num_classes=10, max_value=16.0)
