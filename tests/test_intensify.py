"""Intensification (hpo/intensify.py): the racing rule on hand-made configurations, and on
a synthetic objective with known means and known noise (``noisy_arms``: 10 arms, best arm 5
at 0.70, seed noise sd 0.1): the incumbent by mean finds the true best where one seed's best
value does not, every challenger is compared on the incumbent's seeds, the budget is exact,
each re-evaluation searches with its seed index's seed, and a run killed during a
re-evaluation resumes without evaluating any (configuration, seed) twice."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hpo_helpers import TINY_SLOW, Hpo, of_state, states, wait_for
from optuna.trial import TrialState

from hpo.facts import best_trial
from hpo.intensify import (
    Configuration,
    configurations,
    incumbent,
    next_evaluation,
    summary_rows,
)
from hpo.records import CONFIG_ATTR, SEED_INDEX_ATTR
from hpo.storage import open_storage, study_names
from hpo.study_spec import NoiseSpec
from hpo.synthetic import NOISY_ARM_MEANS

NOISE = NoiseSpec(policy="intensify", min_seeds=3, max_seeds=5)
BEST_ARM = NOISY_ARM_MEANS.index(max(NOISY_ARM_MEANS))


def config(id: int, values: dict[int, float], pending: set[int] = frozenset()) -> Configuration:
    return Configuration(id, {"arm": id}, dict(values), {s: 100 * id + s for s in values},
                         set(pending), set(values) | set(pending))


def decision(*configs: Configuration, noise: NoiseSpec = NOISE,
             maximise: bool = True) -> tuple[int, int] | None:
    found = next_evaluation({c.id: c for c in configs}, noise, maximise)
    return None if found is None else (found[0].id, found[1])


@pytest.mark.parametrize(("configs", "expected"), [
    ((), None),  # nothing yet: ask the sampler
    ((config(0, {0: 0.5}),), (0, 1)),  # the incumbent takes its own seeds to min_seeds
    ((config(0, {0: 0.5, 1: 0.5}, pending={2}),), None),  # ... one at a time
    # a challenger as good as the incumbent on seed 0 gets the incumbent's seed 1
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.5})), (1, 1)),
    # ... and on seeds 0, 1 its seed 2 (paired: the incumbent's seeds, in order)
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.6, 1: 0.5})), (1, 2)),
    # worse on the seeds they share: dropped, the sampler proposes
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.4})), None),
    # better on seed 0 than the incumbent on seed 0, though below its mean over 3 seeds
    ((config(0, {0: 0.3, 1: 0.9, 2: 0.9}), config(1, {0: 0.4})), (1, 1)),
    # level with the incumbent on all its seeds: the incumbent takes one more seed
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.6, 1: 0.6, 2: 0.6})), (0, 3)),
    # ... whether the challenger lost on them (0 stays the incumbent) ...
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.6, 1: 0.5, 2: 0.5})), (0, 3)),
    # ... or won (1 is the incumbent now, and takes a fourth seed)
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.7, 1: 0.7, 2: 0.7})), (1, 3)),
    # a challenger on 3 of the incumbent's 4 seeds, competitive there, gets the fourth
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.6}), config(1, {0: 0.7, 1: 0.7, 2: 0.7})), (1, 3)),
    # ... but never past max_seeds
    ((config(0, {i: 0.6 for i in range(5)}), config(1, {i: 0.6 for i in range(5)})), None),
    # a challenger with a running evaluation is not given another
    ((config(0, {0: 0.5, 1: 0.6, 2: 0.7}), config(1, {0: 0.9}, pending={1})), None),
])
def test_racing_rule(configs: tuple[Configuration, ...], expected: tuple[int, int] | None) -> None:
    assert decision(*configs) == expected


def test_minimising_and_margin() -> None:
    incumbent_ = config(0, {0: 0.5, 1: 0.5, 2: 0.5})
    slightly_worse = config(1, {0: 0.52})
    assert decision(incumbent_, slightly_worse, maximise=False) is None
    assert decision(incumbent_, slightly_worse, maximise=False,
                    noise=NoiseSpec("intensify", 3, 5, margin=0.05)) == (1, 1)
    assert decision(incumbent_, config(1, {0: 0.45}), maximise=False) == (1, 1)


def test_the_incumbent_is_the_best_mean_among_the_most_seeded() -> None:
    lucky = config(1, {0: 0.95})  # one lucky seed does not beat three good ones
    steady = config(0, {0: 0.7, 1: 0.7, 2: 0.7})
    better = config(2, {0: 0.8, 1: 0.72, 2: 0.75})
    assert incumbent({1: lucky, 0: steady}, NOISE, True).id == 0
    assert incumbent({1: lucky, 0: steady, 2: better}, NOISE, True).id == 2
    assert incumbent({1: lucky}, NOISE, True).id == 1  # nobody has 3 seeds yet
    # a better mean on 3 seeds does not displace one on 5 until it has all 5 (paired)
    five = config(3, {i: 0.7 for i in range(5)})
    assert incumbent({0: steady, 2: better, 3: five}, NOISE, True).id == 3
    assert incumbent({2: config(2, {i: 0.75 for i in range(5)}), 3: five}, NOISE, True).id == 2


def noisy_arms_study(tmp_path: Path, **noise: Any) -> Path:
    path = tmp_path / "arms.yaml"
    path.write_text(yaml.safe_dump({
        "name": "arms", "objective": {"kind": "synthetic", "name": "noisy_arms"},
        "params": {"arm": {"type": "int", "low": 0, "high": 9}},
        "noise": {"policy": "intensify", **noise}}))
    return path


def replay_checks(trials: list[optuna.trial.FrozenTrial], noise: NoiseSpec) -> None:
    """Every re-evaluation of a challenger, when it was asked, was on a seed the incumbent
    of that moment had (paired) unless it had all of them already, and no (configuration,
    seed index) ran twice."""
    seen: set[tuple[int, int]] = set()
    for i, trial in enumerate(trials):
        key = (trial.user_attrs[CONFIG_ATTR], trial.user_attrs[SEED_INDEX_ATTR])
        assert key not in seen, f"trial {trial.number} repeats configuration/seed {key}"
        seen.add(key)
        before = configurations(trials[:i])
        best = incumbent(before, noise, True)
        if key[1] > 0 and best is not None and key[0] != best.id and key[0] in before:
            lacked = set(best.values) - before[key[0]].tried
            assert key[1] in best.values or not lacked, (trial.number, key, sorted(lacked))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 3, 4])  # seeds whose draws favour another arm
def test_on_known_means_the_incumbent_is_the_true_best_and_one_seed_is_not(
        cli: Hpo, tmp_path: Path, seed: int) -> None:
    study = noisy_arms_study(tmp_path, min_seeds=5, max_seeds=12)
    assert cli.run("--trials", 120, "--seed", seed, "--sampler", "random", "--name", "race",
                   study=study).code == 0
    assert cli.run("--trials", 120, "--seed", seed, "--sampler", "random", "--name", "plain",
                   "--noise", "none", study=study).code == 0
    race = cli.study("race")
    trials = race.get_trials()
    assert len(of_state(trials, TrialState.COMPLETE)) == 120  # the budget is evaluations
    replay_checks(trials, NoiseSpec("intensify", 5, 12))
    for trial in trials:  # seed index k searches with --seed + k
        assert trial.user_attrs["seed"] == seed + trial.user_attrs[SEED_INDEX_ATTR]
    shown = cli("show", "race").out
    assert "configurations by mean over seeds" in shown
    best = race.best_trial  # Optuna's: the best single value

    assert best_trial(race).params["arm"] == BEST_ARM
    from reports.study_frames import configuration_frame

    table = configuration_frame(race)  # the report's table: the incumbent first
    assert (table.iloc[0]["incumbent"], table.iloc[0]["arm"]) == ("*", BEST_ARM)
    assert table["seeds"].sum() == 120 and table.iloc[0]["seeds"] >= 5
    # with one common seed every arm has one fixed draw: its best is not the true best
    plain = cli.study("plain")
    assert plain.best_trial.params["arm"] != BEST_ARM
    assert best.values[0] > max(NOISY_ARM_MEANS)  # the race's best draw was lucky, too


def test_grid_and_per_trial_seeds_are_refused(cli: Hpo, tmp_path: Path) -> None:
    study = noisy_arms_study(tmp_path)
    result = cli.run("--sampler", "grid", study=study)
    assert result.code == 2 and "intensify needs a sampler that asks" in result.err
    raw = yaml.safe_load(study.read_text())
    raw["training_seed"] = "per_trial"
    study.write_text(yaml.safe_dump(raw))
    result = cli.run(study=study)
    assert result.code == 2
    (line,) = result.err_lines
    assert "training_seed per_trial" in line


def test_a_deterministic_objective_is_named_in_the_summary(cli: Hpo, tmp_path: Path) -> None:
    """Re-evaluations that all repeat their first value bought nothing: the run says so."""
    study = tmp_path / "branin.yaml"
    study.write_text(yaml.safe_dump({
        "name": "branin", "objective": {"kind": "synthetic", "name": "branin"},
        "params": {"x": {"type": "float", "low": -5, "high": 10},
                   "y": {"type": "float", "low": 0, "high": 15}},
        "noise": {"policy": "intensify", "min_seeds": 3, "max_seeds": 5}}))
    result = cli.run("--trials", 12, "--sampler", "random", study=study)
    assert result.code == 0
    configs = configurations(cli.trials("branin"))
    repeats = sum(c.seeds - 1 for c in configs.values())
    assert repeats >= 2  # the first incumbent took its seeds up to min_seeds at least
    assert (f"the objective looks deterministic and {repeats} re-evaluations bought nothing"
            in result.out)
    noisy = noisy_arms_study(tmp_path)
    result = cli.run("--trials", 12, "--sampler", "random", "--name", "arms", study=noisy)
    assert result.code == 0 and "looks deterministic" not in result.out


def _killable_reevaluation(cli: Hpo, name: str) -> bool:
    """A re-evaluation (seed index >= 1) is running, its first epoch not yet done."""
    if not cli.storage.exists() or name not in study_names(open_storage(str(cli.storage))):
        return False
    running = of_state(cli.trials(name), TrialState.RUNNING)
    return (len(running) == 1 and running[0].user_attrs.get(SEED_INDEX_ATTR, 0) >= 1
            and len(running[0].user_attrs.get("history", [])) < 2)


@pytest.mark.slow
def test_a_run_killed_during_a_reevaluation_repeats_no_evaluation(cli: Hpo) -> None:
    name = "raced"
    argv = cli.subprocess_argv("run", "--study", TINY_SLOW, "--trials", 5, "--name", name,
                               "--noise", "intensify", "--jobs", 1)
    proc = subprocess.Popen(argv, cwd=cli.tmp, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: _killable_reevaluation(cli, name), "a running re-evaluation", proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    (killed,) = of_state(cli.trials(name), TrialState.RUNNING)
    done_before = {t.number: t.values for t in of_state(cli.trials(name), TrialState.COMPLETE)}

    result = cli.run("--trials", 5, "--name", name, "--noise", "intensify", "--jobs", 1,
                     study=TINY_SLOW)
    assert result.code == 0, result.err
    trials = cli.trials(name)
    assert states(trials) == {"COMPLETE": 5, "FAIL": 1}
    complete = of_state(trials, TrialState.COMPLETE)
    pairs = [(t.user_attrs[CONFIG_ATTR], t.user_attrs[SEED_INDEX_ATTR]) for t in complete]
    assert len(set(pairs)) == len(pairs) == 5
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert (retry.user_attrs[CONFIG_ATTR], retry.user_attrs[SEED_INDEX_ATTR]) == (
        killed.user_attrs[CONFIG_ATTR], killed.user_attrs[SEED_INDEX_ATTR])
    assert retry.user_attrs["seed"] == killed.user_attrs[SEED_INDEX_ATTR]
    assert {n: trials[n].values for n in done_before} == done_before


def check_tags(trials: list[optuna.trial.FrozenTrial], seed: int = 0) -> None:
    """Complete trials: every (configuration, seed index) once, each searched with --seed +
    its seed index, and a configuration's trials share its parameters."""
    complete = of_state(trials, TrialState.COMPLETE)
    pairs = [(t.user_attrs[CONFIG_ATTR], t.user_attrs[SEED_INDEX_ATTR]) for t in complete]
    assert len(set(pairs)) == len(pairs)
    by_number = {t.number: t for t in trials}
    for trial, (config_id, index) in zip(complete, pairs):
        assert trial.user_attrs["seed"] == seed + index
        assert trial.params == by_number[config_id].params


@pytest.mark.slow
def test_parallel_workers_race_without_repeating_an_evaluation(cli: Hpo, tmp_path: Path) -> None:
    study = noisy_arms_study(tmp_path)
    assert cli.run("--trials", 16, "--jobs", 2, "--sampler", "random", "--name", "two",
                   study=study).code == 0
    trials = cli.trials("two")
    assert states(trials) == {"COMPLETE": 16}
    check_tags(trials)
    assert max(t.user_attrs[SEED_INDEX_ATTR] for t in trials) >= 2  # it did re-evaluate


@pytest.mark.slow
def test_compare_arms_share_the_budget_and_are_judged_by_their_incumbent(
        cli: Hpo, tmp_path: Path) -> None:
    study = noisy_arms_study(tmp_path)
    raw = yaml.safe_load(study.read_text())
    del raw["noise"]  # a plain study: the arms add the policies
    study.write_text(yaml.safe_dump(raw))
    result = cli("compare", "--study", study, "--samplers", "random,random+intensify,"
                 "random+reevaluate", "--trials", 20, "--repeats", 2, "--name", "g")
    assert result.code == 0, result.err
    assert "random+intensify" in result.out and "random+reevaluate" in result.out
    assert "what each study's incumbent is worth" in result.out
    raced = cli.study("g.random-intensify.r1")
    assert states(raced.get_trials()) == {"COMPLETE": 20}
    check_tags(raced.get_trials(), seed=1)
    rerun = cli.study("g.random-reevaluate.r0")
    assert states(rerun.get_trials()) == {"COMPLETE": 14}  # 20 - 3 configurations x 2 seeds
    fresh = {k: v for k, v in rerun.user_attrs.items() if k.startswith("reevaluated_trial_")}
    assert sorted(len(v) for v in fresh.values()) == [2, 2, 2]
    params = [json_params(rerun, k) for k in fresh]
    assert len(set(params)) == 3  # three distinct configurations
    from hpo.groups import group_studies
    from reports.group_frames import incumbent_worth

    worth = incumbent_worth(group_studies(open_storage(str(cli.storage)), "g")).set_index("study")
    incumbent = summary_rows(raced)[0]  # what each arm reports: its own estimate
    assert worth.loc["g.random-intensify.r1", "noisy"] == pytest.approx(incumbent["mean"])
    chosen = best_trial(rerun)
    runs = rerun.user_attrs[f"reevaluated_trial_{chosen.number}"].values()
    assert worth.loc["g.random-reevaluate.r0", "noisy"] == pytest.approx(
        statistics.fmean(run["value"] for run in runs))
    assert worth.loc["g.random.r0", "noisy"] == cli.study("g.random.r0").best_value

    bad = cli("compare", "--study", study, "--samplers", "random+race", "--trials", 5)
    assert bad.code == 2 and len(bad.err_lines) == 1 and "one of intensify, reevaluate" in bad.err


def json_params(study: optuna.Study, key: str) -> str:
    number = int(key.rsplit("_", 1)[1])
    return repr(sorted(study.trials[number].params.items()))


@pytest.mark.slow
def test_python_api_takes_the_policy_and_lists_configurations(tmp_path: Path) -> None:
    import hpo

    study = noisy_arms_study(tmp_path)
    results = hpo.run(str(study), sampler="random", trials=12, noise="intensify",
                      storage=str(tmp_path / "api.log"), artifacts=str(tmp_path / "runs"))
    table = results.configurations()
    assert table["seeds"].sum() == 12 and table.iloc[0]["incumbent"] == "*"
    first = int(table.iloc[0]["trials"].split()[0])
    assert results.best_trial.number == first
    plain = hpo.run(str(study), sampler="random", trials=3, noise="none", name="plain",
                    storage=str(tmp_path / "api.log"), artifacts=str(tmp_path / "runs"))
    assert plain.configurations().empty
