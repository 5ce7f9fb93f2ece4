"""The report's section of a latency table (``hpo profile --out FILE``): per validation the
predicted vs measured scatter, the prediction's accuracy and the fitted correction; the
machine the table was measured on; every measured part."""

from __future__ import annotations

from pathlib import Path

from hpo.announce import shown_path
from reports import figures
from reports import latency_frames as latency_data
from reports.page import Section, add_figure, add_table

STAT_LABELS = {"n": "networks (count)", "spearman": "rank correlation (Spearman)",
               "within_10pct": "share within +-10 % (fraction)",
               "median_abs_error_pct": "median |error| (%)", "mean_error_pct": "mean error (%)"}


def _space_short(signature: str) -> str:
    """'input 1x28x28, 16 channels' from a layout signature (the whole of it if unknown)."""
    fields = dict(part.split("=", 1) for part in signature.split() if "=" in part)
    if "input" in fields and "channels" in fields:
        return f"input {fields['input']}, {fields['channels']} channels"
    return signature


def _validation_section(v: latency_data.LatencyValidation, i: int, out_dir: Path) -> Section:
    stem = f"latency-validation-{i}-batch{v.batch}"
    section = Section(f"Validation {i}: batch {v.batch}", "latency", {
        "search space": v.signature,
        "held-out networks": f"{len(v.points)} (correction fitted on {v.fit} others)",
    })
    add_figure(section, "Predicted vs measured latency of the held-out networks",
            figures.latency_scatter(v, out_dir, stem,
                                    f"{_space_short(v.signature)}, batch {v.batch}: "
                                    "predicted vs measured"))
    add_table(section, out_dir, f"{stem}-stats", "Prediction accuracy: naive sum vs corrected",
           v.stats.rename(index=STAT_LABELS), index=True)
    add_table(section, out_dir, f"{stem}-correction",
           "Fitted correction: measured ~ intercept + fixed parts + sum of scale x op parts",
           v.correction)
    add_table(section, out_dir, f"{stem}-points", "Held-out networks (ms)", v.points)
    return section


def latency_section(report: latency_data.LatencyReport, out_dir: Path) -> Section:
    """The latency model: per validation the scatter, stats and correction; the machine
    fingerprint; every measured part."""
    fp = dict(zip(report.fingerprint["field"], report.fingerprint["value"]))
    settings = ", ".join(f"{k} {v}" for k, v in report.settings.items()) or "-"
    batches = sorted({int(b) for b in report.entries["batch"]})
    section = Section("Latency model", "latency", {
        "latency table": shown_path(str(report.path)),
        "device": f"{fp.get('device', '?')} ({fp.get('device_name', '?')})",
        "timing settings": settings,
        "parts": f"{len(report.entries)} entries at batch sizes {batches}",
        "validations": len(report.validations),
    })
    add_table(section, out_dir, "latency-fingerprint", "Machine the table was measured on",
           report.fingerprint)
    section.children = [_validation_section(v, i, out_dir)
                        for i, v in enumerate(report.validations, start=1)]
    parts = Section("Measured parts", "latency")
    add_table(parts, out_dir, "latency-parts", "Part latencies (ms, median and quartiles)",
           report.entries)
    section.children.append(parts)
    return section


