"""``hpo reevaluate``: the top configurations with fresh seeds, stored per evaluation,
resumable, the seed-robust best chosen by the fresh-seed mean; and StudySpec.from_dict."""

from __future__ import annotations

import statistics

import optuna
import pytest
from hpo_helpers import TINY, Hpo

from hpo.records import REEVALUATED_ATTR, TrialRecord
from hpo.reevaluate import FRESH_SEED_BASE, fresh_seeds, seed_share, summarise
from hpo.study import load_study, spec_from_dict


def stored(cli: Hpo, number: int) -> dict:
    return cli.study("tiny").user_attrs.get(REEVALUATED_ATTR.format(number=number), {})


@pytest.mark.slow
def test_top_configurations_get_fresh_seeds_and_the_best_mean_wins(cli: Hpo) -> None:
    assert cli.run("--trials", 3, "--sampler", "random").code == 0
    result = cli("reevaluate", "tiny", "--top", 2, "--seeds", 2, "-q")
    assert result.code == 0, result.err
    study = cli.study("tiny")
    ranked = sorted(study.trials, key=lambda t: -t.value)
    top, third = ranked[:2], ranked[2]
    assert stored(cli, third.number) == {}
    for trial in top:
        runs = stored(cli, trial.number)
        assert sorted(runs) == [str(FRESH_SEED_BASE), str(FRESH_SEED_BASE + 1)]
        assert TrialRecord.from_frozen(trial).seed not in {int(s) for s in runs}
        assert all(0 <= r["value"] <= 1 and 0 <= r["test_value"] <= 1 for r in runs.values())
    rows = summarise(study)
    means = {r["trial"]: statistics.fmean(v["value"] for v in stored(cli, r["trial"]).values())
             for r in rows}
    assert rows[0]["trial"] == max(means, key=means.get)
    assert rows[0]["fresh_mean"] == pytest.approx(means[rows[0]["trial"]])
    assert result.out.splitlines()[1].lstrip().startswith(f"best trial {rows[0]['trial']:>4}")


@pytest.mark.slow
def test_a_rerun_adds_only_what_is_missing(cli: Hpo) -> None:
    assert cli.run("--trials", 2, "--sampler", "random").code == 0
    assert cli("reevaluate", "tiny", "--top", 1, "--seeds", 1, "-q").code == 0
    best = cli.study("tiny").best_trial.number
    first = stored(cli, best)
    assert cli("reevaluate", "tiny", "--top", 1, "--seeds", 2, "-q").code == 0
    again = stored(cli, best)
    assert len(again) == 2 and again[str(FRESH_SEED_BASE)] == first[str(FRESH_SEED_BASE)]


@pytest.mark.slow
def test_the_same_seed_gives_the_same_value(cli: Hpo) -> None:
    """What makes a fresh-seed mean meaningful: an evaluation is a function of its seed."""
    assert cli.run("--trials", 1, "--sampler", "random").code == 0
    assert cli("reevaluate", "tiny", "--top", 1, "--seeds", 1, "-q").code == 0
    study = cli.study("tiny")
    first = stored(cli, 0)
    study.set_user_attr(REEVALUATED_ATTR.format(number=0), {})
    assert cli("reevaluate", "tiny", "--top", 1, "--seeds", 1, "-q").code == 0
    second = stored(cli, 0)
    assert {k: v["value"] for k, v in first.items()} == {k: v["value"] for k, v in second.items()}


def test_fresh_seeds_skip_every_search_seed() -> None:
    study = optuna.create_study()
    for seed in (FRESH_SEED_BASE, FRESH_SEED_BASE + 2):
        study.add_trial(optuna.trial.create_trial(
            value=0.5, user_attrs=TrialRecord(seed=seed).to_user_attrs()))
    assert fresh_seeds(study, 3) == [FRESH_SEED_BASE + 1, FRESH_SEED_BASE + 3,
                                     FRESH_SEED_BASE + 4]


def test_seed_share_by_hand() -> None:
    study = optuna.create_study(direction="maximize")
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=0.5))
    values = {0: [0.1, 0.3], 1: [0.5, 0.7]}  # within variance 0.02 each; means 0.2, 0.6
    for number, vals in values.items():
        study.set_user_attr(REEVALUATED_ATTR.format(number=number),
                            {str(i): {"value": v, "test_value": None, "seconds": 1.0}
                             for i, v in enumerate(vals)})
    share = seed_share(study)
    total = statistics.variance([0.1, 0.3, 0.5, 0.7])
    assert share["within_sd"] == pytest.approx(0.02 ** 0.5)
    assert share["between_sd"] == pytest.approx(statistics.stdev([0.2, 0.6]))
    assert share["seed_share"] == pytest.approx(0.02 / total)
    assert [r["trial"] for r in summarise(study)] == [1, 0]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), [
    (("--top", 0), "--top: got 0; need >= 1"),
    (("--seeds", 0), "--seeds: got 0; need >= 1"),
    (("--jobs", 0), "--jobs: got 0; need >= 1"),
])
def test_bad_flags_are_one_line(cli: Hpo, args, expected) -> None:
    assert cli.run("--trials", 1, "--sampler", "random").code == 0
    result = cli("reevaluate", "tiny", *args)
    assert result.code == 2 and result.err_lines == [f"hpo reevaluate: error: {expected}"]


def test_a_study_without_complete_trials_is_one_line(cli: Hpo) -> None:
    cli.storage.parent.mkdir(parents=True, exist_ok=True)
    from hpo.storage import open_storage

    optuna.create_study(study_name="empty", storage=open_storage(str(cli.storage)))
    result = cli("reevaluate", "empty")
    assert result.code == 2 and len(result.err_lines) == 1
    assert "no complete trial" in result.err or "not made by hpo run" in result.err


def test_study_spec_round_trips_through_its_stored_form() -> None:
    spec = load_study(TINY)
    again = spec_from_dict(spec.to_dict(), str(TINY))
    assert again == spec and again.fingerprint() == spec.fingerprint()
    cpu = load_study("studies/fashion-mnist-cpu.yaml")
    assert spec_from_dict(cpu.to_dict()).fingerprint() == cpu.fingerprint()


@pytest.mark.slow
def test_per_trial_training_seeds_are_recorded_and_reproducible(cli: Hpo, tmp_path) -> None:
    from hpo.trial import training_seed

    per_trial = tmp_path / "per_trial.yaml"
    per_trial.write_text(TINY.read_text() + "training_seed: per_trial\n")
    assert cli.run("--trials", 3, "--sampler", "random", "--seed", 5, study=per_trial).code == 0
    spec = load_study(per_trial)
    seeds = [TrialRecord.from_frozen(t).seed for t in cli.study("tiny").trials]
    assert seeds == [training_seed(spec, 5, n) for n in range(3)] and len(set(seeds)) == 3
    assert training_seed(load_study(TINY), 5, 2) == 5  # common: the run's seed
    assert cli("reevaluate", "tiny", "--top", 1, "--seeds", 1, "-q").code == 0
    assert list(stored(cli, cli.study("tiny").best_trial.number)) == [str(FRESH_SEED_BASE)]


@pytest.mark.slow
def test_run_can_reevaluate_at_the_end(cli: Hpo) -> None:
    result = cli.run("--trials", 2, "--sampler", "random", "--reevaluate", 1)
    assert result.code == 0, result.err
    assert "re-evaluated with fresh seeds" in result.out
    for trial in cli.study("tiny").trials:  # top 3 of 2 trials: both, one fresh seed each
        assert list(stored(cli, trial.number)) == [str(FRESH_SEED_BASE)]


def test_a_bad_reevaluate_count_is_one_line_and_writes_nothing(cli: Hpo) -> None:
    result = cli.run("--trials", 1, "--reevaluate", -1)
    assert result.code == 2
    assert result.err_lines == ["hpo run: error: --reevaluate: got -1; need 0..100 fresh seeds "
                                "per configuration (0: none)"]
    assert cli.nothing_written()
