"""reports/ and latency: the "Latency model" section of a hand-made latency table, and the
accuracy-vs-latency front of a hand-made study whose family rows carry latency_ms."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from hpo.cli import main
from hpo.storage import open_storage
from reports import latency_frames as latency
from reports import study_frames
from reports.html import report_files, write_report
from search_core.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
SIGNATURE = "ops=max_pool_3x3,skip_connect,sep_conv_3x3 cells=3 nodes=2 channels=4"

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Five held-out networks with known numbers (ms).
MEASURED = [1.0, 2.0, 3.0, 4.0, 5.0]
NAIVE = [0.5, 1.2, 1.4, 2.2, 2.4]  # same order as measured, every one 40-53 % low
CORRECTED = [1.05, 1.9, 3.5, 3.4, 5.0]  # ranks 1,2,4,3,5; |rel| .05,.05,.167,.15,0
# spearman = 1 - 6 * (1 + 1) / (5 * 24) = 0.9; within +-10 %: 3 of 5
NAIVE_STATS = {"n": 5, "spearman": 1.0, "within_10pct": 0.0, "median_abs_error_pct": 50.0,
               "mean_error_pct": -48.0666667}
CORRECTED_STATS = {"n": 5, "spearman": 0.9, "within_10pct": 0.6,
                   "median_abs_error_pct": 5.0, "mean_error_pct": 0.3333333}


def _genotype(op: str) -> dict:
    edges = [{"from": 0, "to": 2, "op": op}, {"from": 1, "to": 2, "op": "skip_connect"}]
    return {"normal": edges, "reduce": edges}


def _entry(kind: str, name: str, median: float) -> dict:
    return {"batch": 1, "kind": kind, "name": name, "c_in": 4, "c_out": 4, "height": 8,
            "width": 8, "stride": 1, "arity": 1, "label": f"{kind}:{name} c4->4 8x8 s1 n1",
            "median_ms": median, "p25_ms": median * 0.9, "p75_ms": median * 1.1,
            "calls_per_round": 100, "spread_ms": median * 0.1}


def latency_table() -> dict:
    """What ``LatencyTable.to_dict`` writes, by hand."""
    records = [{"genotype": _genotype(OPS[i % 3]), "measured_ms": m, "spread_ms": 0.01 * m,
                "naive_ms": n, "predicted_ms": c}
               for i, (m, n, c) in enumerate(zip(MEASURED, NAIVE, CORRECTED))]
    return {
        "format": 1,
        "fingerprint": {"device": "cpu", "device_name": "Test CPU", "cpu_model": "Test CPU",
                        "cores": 1, "threads": 1, "torch": "9.9.9", "machine": "x86_64",
                        "hostname": "box"},
        "settings": {"warmup": 10, "rounds": 7, "round_ms": 4.0, "passes": 7, "threads": 1,
                     "device": "cpu"},
        "entries": [_entry("stem", "", 0.1), *(_entry("op", op, 0.2 + i)
                                                for i, op in enumerate(OPS))],
        "corrections": [{"signature": SIGNATURE, "batch": 1, "intercept_ms": 0.25,
                         "scales": {"max_pool_3x3": 1.5, "skip_connect": 2.0,
                                    "sep_conv_3x3": 3.0}, "fitted_on": 4}],
        "validations": [{"signature": SIGNATURE, "batch": 1, "fit": 4, "naive": NAIVE_STATS,
                         "corrected": CORRECTED_STATS, "records": records}],
    }


@pytest.fixture()
def table_path(tmp_path: Path) -> Path:
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(latency_table()))
    return path


def _check_index(index: Path) -> set[str]:
    text = index.read_text()
    assert not re.search(r"https?://", text)
    assert "<script" not in text
    files = report_files(index)
    for path in files:
        assert path.is_file() and path.stat().st_size > 0, path
    return {p.name for p in files}


# ----------------------------------------------------------------------------- the table


def test_latency_data(table_path):
    report = latency.load_latency(table_path)
    assert report.path == str(table_path) and len(report.validations) == 1
    v = report.validations[0]
    assert (v.signature, v.batch, v.fit) == (SIGNATURE, 1, 4)
    assert v.points["measured_ms"].tolist() == MEASURED  # the points are the records
    assert v.points["naive_ms"].tolist() == NAIVE
    assert v.points["predicted_ms"].tolist() == CORRECTED
    assert v.points["genotype"].iloc[0] == ("normal: max_pool_3x3,skip_connect; "
                                            "reduce: max_pool_3x3,skip_connect")
    raw = latency_table()["validations"][0]
    for kind in ("naive", "corrected"):  # recomputed from the records = what was recorded
        assert list(v.stats.index) == list(latency.STAT_NAMES)
        for stat in latency.STAT_NAMES:
            assert v.stats.loc[stat, kind] == pytest.approx(raw[kind][stat]), (kind, stat)
    assert dict(zip(v.correction["term"], v.correction["value"])) == {
        "scale max_pool_3x3": 1.5, "scale skip_connect": 2.0, "scale sep_conv_3x3": 3.0,
        "intercept_ms": 0.25}
    fp = dict(zip(report.fingerprint["field"], report.fingerprint["value"]))
    assert {k: fp[k] for k in ("device", "cpu_model", "cores", "threads", "torch")} == {
        "device": "cpu", "cpu_model": "Test CPU", "cores": "1", "threads": "1",
        "torch": "9.9.9"}
    assert len(report.entries) == 4 and report.entries["median_ms"].iloc[0] == 0.1


def test_prediction_stats_oracle():
    rng = np.random.default_rng(0)
    measured = rng.uniform(1, 10, 40)
    predicted = measured * rng.uniform(0.8, 1.2, 40)
    stats = latency.prediction_stats(predicted, measured)
    rel = predicted / measured - 1
    within = sum(abs(r) <= 0.1 for r in rel) / len(rel)
    rank_m = np.argsort(np.argsort(measured))  # no ties: plain ranks
    rank_p = np.argsort(np.argsort(predicted))
    d2 = float(np.sum((rank_m - rank_p) ** 2))
    assert stats["spearman"] == pytest.approx(1 - 6 * d2 / (40 * (40**2 - 1)))
    assert stats["within_10pct"] == pytest.approx(within)
    assert stats["mean_error_pct"] == pytest.approx(100 * sum(rel) / len(rel))


def test_latency_report_files(table_path, tmp_path):
    index = write_report(None, [], tmp_path / "out", latency=table_path)
    names = _check_index(index)
    assert {"latency-validation-1-batch1.png", "latency-validation-1-batch1.svg",
            "latency-validation-1-batch1-stats.csv", "latency-validation-1-batch1-correction.csv",
            "latency-fingerprint.csv", "latency-parts.csv"} <= names
    text = index.read_text()
    assert "Latency model" in text and "Test CPU" in text and "storage:" not in text
    assert "rank correlation (Spearman)" in text and "intercept_ms" in text
    parts = (tmp_path / "out" / "latency-parts.csv").read_text().splitlines()
    assert len(parts) == 5 and parts[0].startswith("batch,kind,name")


def _broken_tables(tmp_path: Path) -> dict[str, Path]:
    paths = {"missing": tmp_path / "nope.json"}
    for name, text in (("not json", "{"), ("old format", json.dumps({"format": 0})),
                       ("no entries", json.dumps({"format": 1, "fingerprint": {}})),
                       ("bad record", json.dumps(latency_table() | {"validations": [
                           {"signature": "x", "batch": 1, "records": [{"measured_ms": 1}]}]})),
                       ("list", "[]")):
        path = tmp_path / f"{name.replace(' ', '_')}.json"
        path.write_text(text)
        paths[name] = path
    return paths


def test_bad_table(tmp_path):
    for name, path in _broken_tables(tmp_path).items():
        with pytest.raises(ConfigError) as info:
            latency.load_latency(path)
        message = str(info.value)
        assert str(path) in message and f"hpo profile --out {path}" in message, name
        assert "\n" not in message, name


def test_cli_bad_latency_path(tmp_path, capsys):
    bad = tmp_path / "nope.json"
    assert main(["report", "--latency", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "hpo profile --out" in err[0]
    assert not (tmp_path / "r" / "index.html").exists()


def test_cli_needs_names_or_latency(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hpo report: error: give study/group names, --latency TABLE.json, or both"]


def test_an_unknown_study_is_named_before_any_missing_flag(tmp_path, capsys, monkeypatch):
    """"hpo report nosuch" asked for --out first, then said "report: report: unknown"."""
    import optuna

    from hpo.storage import open_storage

    monkeypatch.chdir(tmp_path)
    storage = str(tmp_path / "x.journal")
    optuna.create_study(study_name="other", storage=open_storage(storage))
    assert main(["report", "nosuch", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hpo report: error: ")
    assert "nosuch" in err[0] and "report: report" not in err[0]
    assert not (tmp_path / "report").exists()


def test_cli_latency_only(table_path, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", "--latency", str(table_path), "--out", str(out),
                 "--storage", str(tmp_path / "absent.journal")]) == 0
    assert "index.html" in capsys.readouterr().out
    _check_index(out / "index.html")
    assert not (tmp_path / "absent.journal").exists()  # no storage opened without names


# ----------------------------------------------------------------------------- studies

# probe: (accuracy, params, latency_ms); params order and latency order differ.
MEMBERS = {"A": (0.80, 3000, 4.0), "B": (0.70, 1000, 6.0), "C": (0.85, 5000, 5.0),
           "D": (0.60, 2000, 1.5), "L0": (0.75, 4000, 2.0), "L1": (0.65, 1500, 3.0),
           "L2": (0.90, 6000, 7.0), "L3": (0.72, 2500, 2.5)}


def _rows(shift: float, latency: bool) -> list[dict]:
    rows = []
    for probe, (acc, params, ms) in MEMBERS.items():
        rows.append({"probe": probe, "s_a": 0.5, "s_b": 0.5, "accuracy": acc - shift,
                     "params": params, "cell_params": params // 2,
                     "latency_ms": ms + shift if latency else None, "n_a": 1, "n_b": 2})
    return rows


def _family_study(storage, name: str, latency: bool) -> optuna.Study:
    """Trial 0 (best, hypervolume 0.5), trial 1 (0.3, shifted worse); with ``latency`` the
    rows carry latency_ms and the objective's complexity is latency."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    complexity = "latency" if latency else "params"
    study.set_user_attr("study_file", {"name": name, "objective": {
        "kind": "hypervolume", "complexity": complexity}})
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for value, shift in ((0.5, 0.0), (0.3, 0.02)):
        study.add_trial(optuna.trial.create_trial(
            params={"x": value}, distributions=dist, value=value,
            user_attrs={"family": _rows(shift, latency),
                        "family_summary": {"hypervolume": value, "complexity": complexity}}))
    return study


@pytest.fixture()
def journal(tmp_path: Path) -> str:
    url = str(tmp_path / "x.journal")
    storage = open_storage(url)
    _family_study(storage, "lat", latency=True)
    _family_study(storage, "nolat", latency=False)
    return url


def _non_dominated(front) -> bool:
    acc, cx = front["accuracy"].to_numpy(float), front["latency_ms"].to_numpy(float)
    return not any(np.any((acc >= acc[i]) & (cx <= cx[i]) & ((acc > acc[i]) | (cx < cx[i])))
                   for i in range(len(acc)))


def test_latency_front(journal):
    study = optuna.load_study(study_name="lat", storage=open_storage(journal))
    front = study_frames.best_family_front(study, study_frames.LATENCY)
    assert front is not None and front.trial == 0 and front.complexity == "latency_ms"
    f = front.front
    assert _non_dominated(f)
    assert set(f["probe"]) == {"D", "L0", "A", "C", "L2"}  # worked out by hand
    assert "D" in set(f["probe"]) and "L2" in set(f["probe"])  # fastest, most accurate
    assert set(front.members.loc[front.members["is_seed_probe"], "probe"]) == set("ABCD")
    union = study_frames.union_front(study, study_frames.LATENCY)
    assert union is not None and set(union.members["trial"]) == {0, 1}
    assert _non_dominated(union.front) and set(union.front["trial"]) == {0}
    assert study_frames.objective_complexity(study) == "latency"
    assert "latency_ms" in study_frames.probe_table(study.best_trial)


def test_no_latency_front(journal):
    study = optuna.load_study(study_name="nolat", storage=open_storage(journal))
    assert study_frames.best_family_front(study, study_frames.LATENCY) is None
    assert study_frames.union_front(study, study_frames.LATENCY) is None
    assert study_frames.best_family_front(study) is not None  # the params front is still there
    assert "latency_ms" not in study_frames.probe_table(study.best_trial)
    assert study_frames.objective_complexity(study) == "params"


@pytest.mark.slow
def test_study_report_with_latency(journal, table_path, tmp_path):
    index = write_report(journal, ["lat", "nolat"], tmp_path / "out", latency=table_path)
    names = _check_index(index)
    for stem in ("lat-front", "lat-latency-front", "nolat-front", "latency-validation-1-batch1"):
        assert {f"{stem}.png", f"{stem}.svg"} <= names, stem
    assert {"lat-latency-front-best.csv", "lat-latency-front-union.csv"} <= names
    assert not any(n.startswith("nolat-latency") for n in names)
    best = (tmp_path / "out" / "lat-latency-front-best.csv").read_text().splitlines()
    assert best[0].split(",")[:2] == ["probe", "accuracy"] and len(best) == 6
    text = index.read_text()
    assert "hypervolume over accuracy vs latency (ms, batch 1, measured on the target device)" \
        in text


@pytest.mark.slow
def test_no_torch_with_latency(journal, table_path, tmp_path):
    code = ("import sys\n"
            "from hpo.cli import main\n"
            f"assert main(['report', 'lat', '--storage', {journal!r}, '--latency', "
            f"{str(table_path)!r}, '--out', {str(tmp_path / 'r')!r}]) == 0\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
