"""Weight quantisation with trained thresholds (in the manner of Jain et al. 2020, "Trained
Quantization Thresholds", and of the thesis's review): symmetric uniform levels
per layer (or per output channel) between -t and t, the clipping threshold t calibrated
(max |w|: min-max) and then fine-tuned through a straight-through estimator, optionally with
distillation from the full-precision model; and a bit-width per layer chosen under a size
budget.

The result is *simulated*: weights are stored as their dequantised float32 values on the
quantisation grid, so the model computes at float speed; its size in bytes is counted at the
chosen widths (``compress.base.size_bytes``). Where every layer is at 8 bits, the stage also
converts the model to torch's int8 kernels (FX graph mode, x86 backend: int8 weights per
channel and activations, calibrated by torch's observers on training batches) and measures
that model's accuracy and latency for real (``int8``); 4-bit and mixed widths have no CPU
kernels here and stay simulated.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from compress.base import Context, StageRecord, fit, measure, size_bytes, timed_record, weights
from compress.distill import distillation_loss
from compress.settings import QuantiseSettings
from search_core.data import DataSplits, Split, batches
from search_core.errors import ConfigError
from search_core.timing import TimingSettings, measure_many
from search_core.train import accuracy


def levels(bits: int) -> int:
    """The largest integer level of a signed symmetric ``bits``-bit grid (127 for 8 bits)."""
    return 2 ** (bits - 1) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def fake_quantise(w: torch.Tensor, threshold: torch.Tensor, bits: int) -> torch.Tensor:
    """w clipped to [-t, t] and rounded to the nearest of 2 * levels + 1 values (dequantised).
    ``threshold`` broadcasts against ``w`` (a scalar, or one per output channel). Gradients:
    straight through the rounding for w inside the range, and to t through the scale."""
    scale = threshold / levels(bits)
    return round_ste(torch.clamp(w / scale, -levels(bits), levels(bits))) * scale


def minmax_threshold(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """max |w| over the layer, or over each output channel (shaped to broadcast)."""
    if not per_channel:
        return w.detach().abs().max().clamp_min(1e-8)
    flat = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1).clamp_min(1e-8)
    return flat.reshape(-1, *([1] * (w.dim() - 1)))


class TrainedThreshold(nn.Module):
    """A parametrisation of a weight: its fake-quantised value at ``bits``, with the
    threshold learned in log space (positive, and scale-free steps)."""

    def __init__(self, weight: torch.Tensor, bits: int, per_channel: bool) -> None:
        super().__init__()
        self.bits = bits
        self.log_threshold = nn.Parameter(minmax_threshold(weight, per_channel).log())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantise(w, self.log_threshold.exp(), self.bits)


def quantised(model: nn.Module, bits: dict[str, int], per_channel: bool) -> nn.Module:
    """A copy of ``model`` whose conv and linear weights are fake-quantised at ``bits[name]``
    (min-max thresholds, trainable)."""
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    for name, weight in list(weights(model)):
        if name in bits:
            owner = modules[name.rsplit(".", 1)[0]] if "." in name else model
            parametrize.register_parametrization(
                owner, "weight", TrainedThreshold(weight, bits[name], per_channel))
    return model


def frozen(model: nn.Module) -> nn.Module:
    """The model with its parametrisations replaced by the quantised weights they give."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def thresholds(model: nn.Module) -> list[nn.Parameter]:
    return [m.log_threshold for m in model.modules() if isinstance(m, TrainedThreshold)]


def quantise_model(model: nn.Module, data: DataSplits, settings: QuantiseSettings,
                   bits: dict[str, int]) -> nn.Module:
    """``model`` quantised at ``bits``, with thresholds fine-tuned unless min-max."""
    teacher = model
    student = quantised(model, bits, settings.per_channel)
    if settings.calibration == "trained":
        params = thresholds(student)
        if settings.train_weights:
            params += [p for n, p in student.named_parameters() if "log_threshold" not in n]
        alpha, temperature = settings.distill_alpha, settings.temperature

        def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                reference = teacher(x)
            return distillation_loss(net(x), reference, y, temperature, alpha)

        fit(student, data, settings.fit, loss, parameters=params)
    return frozen(student).eval()


SENSITIVITY_IMAGES = 512  # validation images the per-layer sensitivities are measured on


def choose_bits(model: nn.Module, data: DataSplits, settings: QuantiseSettings) -> dict[str, int]:
    """A width per layer under ``size_budget_bytes``. Each layer's sensitivity to each
    narrower width is measured alone (validation cross-entropy with only that layer
    quantised, min-max, no training), taken as additive, and layers are narrowed greedily,
    the cheapest increase in loss per byte saved first, until the model fits. Raises when
    even the narrowest widths do not fit."""
    choices = sorted(set(settings.bit_choices), reverse=True)
    names = [name for name, _ in weights(model)]
    budget = settings.size_budget_bytes or 0
    narrowest = size_bytes(model, dict.fromkeys(names, choices[-1]))
    if narrowest > budget:
        raise ConfigError(f"quantise size_budget_bytes {budget}: even {choices[-1]}-bit "
                          f"weights need {narrowest} bytes; raise the budget")
    sensitivity = layer_sensitivities(model, data.val, choices, settings.per_channel)
    bits = dict.fromkeys(names, choices[0])
    while size_bytes(model, bits) > budget:
        moves = []
        for name, width in bits.items():
            narrower = [c for c in choices if c < width]
            if narrower:
                trial = {**bits, name: narrower[0]}
                saved = size_bytes(model, bits) - size_bytes(model, trial)
                worse = sensitivity[name, narrower[0]] - sensitivity[name, width]
                moves.append((worse / max(saved, 1), name, narrower[0]))
        _, name, width = min(moves)  # the budget check guarantees a move is left
        bits[name] = width
    return bits


@torch.no_grad()
def layer_sensitivities(model: nn.Module, split: Split, widths: list[int],
                        per_channel: bool) -> dict[tuple[str, int], float]:
    """Validation cross-entropy increase with one layer quantised to one width (the
    widest is the reference, 0); the model is restored after each measurement."""
    x, y = split.x[:SENSITIVITY_IMAGES], split.y[:SENSITIVITY_IMAGES]
    model.eval()
    base = float(F.cross_entropy(model(x), y))
    found = {}
    for name, weight in weights(model):
        original = weight.detach().clone()
        threshold = minmax_threshold(original, per_channel)
        found[name, widths[0]] = 0.0
        for width in widths[1:]:
            weight.copy_(fake_quantise(original, threshold, width))
            found[name, width] = float(F.cross_entropy(model(x), y)) - base
        weight.copy_(original)
    return found


def quantise(model: nn.Module, data: DataSplits, settings: QuantiseSettings,
             context: Context) -> tuple[nn.Module, StageRecord]:
    started = time.perf_counter()
    before = measure(model, data.val)
    if settings.size_budget_bytes is not None:
        bits = choose_bits(model, data, settings)
    else:
        bits = {name: settings.bits for name, _ in weights(model)}
    result = quantise_model(model, data, settings, bits)
    record = timed_record("quantise", settings, before, result, data, started,
                          bits=bits, simulated=True)
    record.after["bytes"] = float(size_bytes(result, bits))
    if settings.int8_kernels and set(bits.values()) == {8}:
        record.extra["int8"] = int8_measurements(model, result, data, settings.timing)
    return result, record


# What torch's FX int8 path warns each time it runs (checked against torch 2.13): (category,
# a regular expression the message starts with). Hidden around that path, nothing else is.
FX_DEPRECATIONS: tuple[tuple[type[Warning], str], ...] = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"Please use quant_min and quant_max to specify the range for observers"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other "
                  r"quantized tensor creation functions .* are deprecated"),
)
# The plan: torch.ao.quantization's FX mode (prepare_fx/convert_fx) is deprecated for torchao's
# pt2e flow (torch.export, then torchao.quantization.pt2e prepare_pt2e/convert_pt2e with the
# X86InductorQuantizer). Checked here with torchao 0.18 on torch 2.13 (CPU): its wheel needs
# no other package (its CUDA extensions fail to load on CPU, harmlessly) and pt2e quantises,
# but the converted model runs quantise/dequantise reference ops at float speed; int8
# kernels need torch.compile (inductor: a C++ compiler, ~15 s for a tiny model), which
# changes what the ``int8`` latency measures. Move when torch drops the FX path: torchao as
# an extra, the converted model compiled before it is timed, FX_DEPRECATIONS deleted.


@contextlib.contextmanager
def fx_deprecations_hidden() -> Iterator[None]:
    """Hide the FX int8 path's own deprecation warnings (``FX_DEPRECATIONS``); any other
    warning raised meanwhile still shows."""
    with warnings.catch_warnings():
        for category, message in FX_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def to_int8(model: nn.Module, data: DataSplits, calibration_batches: int = 8) -> nn.Module:
    """``model`` converted to torch's int8 CPU kernels (FX graph mode, x86 backend),
    its activation ranges observed on ``calibration_batches`` training batches."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = copy.deepcopy(model).eval()
    example = data.train.x[:1]
    with fx_deprecations_hidden():
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (example,))
        with torch.no_grad():
            for x, _ in batches(data.train, 64, None):
                prepared(x)
                calibration_batches -= 1
                if calibration_batches <= 0:
                    break
        return convert_fx(prepared)


def int8_measurements(original: nn.Module, quantised_model: nn.Module, data: DataSplits,
                      timing: TimingSettings) -> dict[str, float]:
    """Accuracy and batch-1 latency (ms, this CPU) of the float model and of torch's int8
    conversion of the quantised one, measured interleaved."""
    int8 = to_int8(quantised_model, data)
    x = data.val.x[:1]
    latencies = measure_many([lambda: original(x), lambda: int8(x)], timing)
    return {"accuracy": accuracy(int8, data.val), "latency_ms": latencies[1].median_ms,
            "float_latency_ms": latencies[0].median_ms,
            "speedup_pct": 100 * (latencies[0].median_ms / latencies[1].median_ms - 1)}
