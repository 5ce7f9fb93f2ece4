"""Where a search runs and in what precision: ``device`` and ``precision`` settings.

``device``: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` (the
current GPU) or ``cuda:N``. ``precision``: ``fp32``; ``bf16`` (autocast to bfloat16: CUDA,
and CPUs with bfloat16 instructions, e.g. AVX-512 BF16 or AMX); ``fp16`` (autocast to
float16 with a gradient scaler: CUDA only).

Only the supernet's forward pass runs under autocast: the hypernetwork, the Gumbel noise, the
complexity cost, the losses and the optimisers stay in float32, and the weights are stored in
float32 whatever the precision.

The names are checked without torch (:func:`check_device_name`, :func:`check_precision`, for
study files); :func:`resolve_device` needs torch and says in one line when CUDA is missing.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from search_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
PRECISIONS = ("fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d{1,3})?)$")


def check_device_name(name: object, key: str = "device") -> str:
    """``name`` if it is a device name this package knows, else a ``ConfigError``."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"{key}: got {str(name)[:40]!r}; expected one of "
                          f"{', '.join(DEVICE_NAMES)}")
    return name


def check_precision(name: object, key: str = "precision") -> str:
    if name not in PRECISIONS:
        raise ConfigError(f"{key}: got {str(name)[:40]!r}; expected one of "
                          f"{', '.join(PRECISIONS)}")
    return str(name)


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(name: str, key: str = "device") -> torch.device:
    """The torch device ``name`` means on this machine. ``cuda`` or ``cuda:N`` without a
    usable GPU is a ``ConfigError`` naming what is missing and the way out."""
    import torch

    check_device_name(name, key)
    if name == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not cuda_available():
        raise ConfigError(f"{key}: {name} asked for, but torch sees no CUDA GPU here "
                          f"(torch {torch.__version__}, CUDA build: "
                          f"{torch.version.cuda or 'no'}); use device: cpu or auto")
    device = torch.device(name)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"{key}: {name} asked for, but this machine has {count} GPU(s) "
                          f"visible (cuda:0..cuda:{count - 1}); check CUDA_VISIBLE_DEVICES")
    return device


def check_device_precision(device: torch.device, precision: str, key: str = "precision") -> None:
    """fp16 autocast is for CUDA; bf16 runs anywhere but is only fast where the hardware
    has bfloat16 arithmetic (checked by the benchmark, not here)."""
    check_precision(precision, key)
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"{key}: fp16 needs a CUDA device (got {device}); use bf16 on a "
                          "CPU with bfloat16 instructions, or fp32")


def device_record(device: torch.device) -> dict[str, Any]:
    """What a trial records of where it ran: the device and, on a GPU, its name."""
    import torch

    if device.type != "cuda":
        return {"device": "cpu"}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return {"device": f"cuda:{index}", "device_name": torch.cuda.get_device_name(index)}


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """Autocast to ``precision`` on ``device``; nothing for fp32."""
    import torch

    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """The loss scaler fp16 needs (None otherwise: bf16 has float32's exponent range)."""
    import torch

    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def bf16_supported_on_cpu() -> bool:
    """Whether this CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX)."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def add_device_arguments(parser: Any, default_device: str | None = None) -> None:
    """``--device`` and ``--precision`` on a command line (argparse); None: the study's or
    the config's own setting."""
    parser.add_argument("--device", default=default_device, metavar="DEVICE",
                        help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or "
                             "cuda:N" + ("" if default_device else " (default: the study's, "
                                         "else auto)"))
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="fp32, bf16 (autocast; CUDA or a CPU with bfloat16 "
                             "instructions) or fp16 (CUDA, with a gradient scaler); "
                             "default: the study's, else fp32")
