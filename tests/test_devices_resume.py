"""Devices, precision, GPU placement and resumable searches (issue 26).

Device selection and its errors, ``auto`` on a CPU-only machine, bf16 autocast on the CPU,
fp16 guarded, the worker-placement maths, and a search killed at epoch k that resumes and
ends bit for bit where an uninterrupted one ends (in-process and with a real SIGKILL).
GPU-only tests are skipped with the reason where CUDA is absent.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hpo_helpers import TINY, TINY_SLOW, WAIT_S, Hpo, of_state, setting, states
from optuna.trial import TrialState

from hpo.backends.local import seed_number, worker_gpu_environment
from hpo.backends.ray import trial_resources
from hpo.options import RayOptions, RunOptions, trial_threads, with_jobs
from hpo.placement import gpu_slots, parse_visible, threads_for, visible_gpus, worker_gpu
from hpo.study import load_study
from hpo.study_spec import with_run_settings
from hpo.trial import TrialTask, run_trial
from search_core.config import SearchConfig, TrainConfig
from search_core.device import (
    autocast,
    check_device_name,
    device_record,
    resolve_device,
)
from search_core.engine import search
from search_core.errors import ConfigError, DataError

CUDA = torch.cuda.is_available()
no_cuda = pytest.mark.skipif(CUDA, reason="checks the CPU-only path; this machine has CUDA")
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (none visible to torch)")


class Stop(Exception):
    """Stands for a kill after an epoch's checkpoint was written."""


def stop_after(epoch: int):
    def on_epoch(metrics) -> None:
        if metrics.epoch == epoch:
            raise Stop

    return on_epoch


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------
# devices and precision


@no_cuda
def test_auto_is_the_cpu_without_cuda_and_cuda_is_refused_in_one_line() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert device_record(resolve_device("cpu")) == {"device": "cpu"}
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError) as err:
            resolve_device(name)
        message = str(err.value)
        assert "no CUDA" in message and "device: cpu or auto" in message
        assert "\n" not in message


def test_device_and_precision_names_are_checked() -> None:
    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert check_device_name(good) == good
    for bad in ("gpu", "CUDA", "cuda:", "cuda:x", "tpu", "", 3):
        with pytest.raises(ConfigError, match="expected one of auto, cpu, cuda, cuda:N"):
            check_device_name(bad)
    with pytest.raises(ConfigError, match="device"):
        SearchConfig(device="mps")
    with pytest.raises(ConfigError, match=r"precision.*fp32, bf16, fp16"):
        SearchConfig(precision="fp8")  # type: ignore[arg-type]


@no_cuda
def test_fp16_on_the_cpu_is_refused_before_training(tiny_config: SearchConfig) -> None:
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        search(tiny_config.replace(precision="fp16", device="cpu"))


@pytest.mark.slow
def test_bf16_autocast_runs_a_tiny_search_on_the_cpu(tiny_config, tiny_data) -> None:
    fp32 = search(tiny_config, tiny_data)
    bf16 = search(tiny_config.replace(precision="bf16"), tiny_data)
    losses = [h["train_loss"] for h in bf16.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses != [h["train_loss"] for h in fp32.history]  # it did compute in bf16
    assert abs(losses[-1] - fp32.history[-1]["train_loss"]) < 0.5  # and close to fp32
    # weights stay float32 whatever the precision; BN statistics too
    assert all(t.dtype == torch.float32 for t in bf16.supernet.state_dict().values()
               if t.is_floating_point())
    family = bf16.family(tiny_data)
    assert 0 <= family.hypervolume <= 1
    assert bf16.device == {"device": "cpu"}


def test_cpu_autocast_casts_in_bf16_and_not_in_fp32() -> None:
    cpu = torch.device("cpu")
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    with autocast(cpu, "fp32"):
        assert (x @ w).dtype == torch.float32
    with autocast(cpu, "bf16"):
        assert (x @ w).dtype == torch.bfloat16


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_tiny_search_runs_on_the_gpu(tiny_config, tiny_data, precision: str) -> None:
    result = search(tiny_config.replace(device="cuda", precision=precision), tiny_data)
    assert result.device["device"].startswith("cuda:") and result.device["device_name"]
    assert next(result.supernet.parameters()).is_cuda
    assert 0 <= result.family(tiny_data).hypervolume <= 1


# ---------------------------------------------------------------------------------------------
# resume


@pytest.mark.slow
@pytest.mark.parametrize("killed_after", [0, 1])
def test_a_search_resumed_after_epoch_k_ends_exactly_as_an_uninterrupted_one(
        tiny_config, tiny_data, tmp_path: Path, killed_after: int) -> None:
    config = tiny_config.replace(train=dataclasses.replace(tiny_config.train, epochs=3))
    whole = search(config, tiny_data)
    state = tmp_path / "state.pt"
    with pytest.raises(Stop):
        search(config, tiny_data, on_epoch=stop_after(killed_after), state=state)
    assert state.exists()
    resumed = search(config, tiny_data, state=state)
    assert resumed.resumed_from == killed_after + 1
    assert whole.resumed_from is None
    assert same_weights(resumed.supernet, whole.supernet)
    assert same_weights(resumed.hypernet, whole.hypernet)
    drop = {"seconds"}
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed.history] == \
        [{k: v for k, v in h.items() if k not in drop} for h in whole.history]
    a, b = resumed.family(tiny_data), whole.family(tiny_data)
    assert a.hypervolume == b.hypervolume
    assert [m.accuracy for m in a.members] == [m.accuracy for m in b.members]


@pytest.mark.slow
def test_a_finished_state_resumes_to_the_same_result_without_training(
        tiny_config, tiny_data, tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    first = search(tiny_config, tiny_data, state=state)
    again = search(tiny_config, tiny_data, state=state,
                   on_epoch=lambda m: pytest.fail("no epoch should run"))
    assert again.resumed_from == tiny_config.train.epochs
    assert same_weights(first.supernet, again.supernet)


@pytest.mark.slow
def test_a_checkpoint_of_another_configuration_is_refused(
        tiny_config, tiny_data, tmp_path: Path) -> None:
    state = tmp_path / "state.pt"
    with pytest.raises(Stop):
        search(tiny_config, tiny_data, on_epoch=stop_after(0), state=state)
    other = tiny_config.replace(train=dataclasses.replace(tiny_config.train, kappa=2.0))
    with pytest.raises(ConfigError) as err:
        search(other, tiny_data, state=state)
    assert "another configuration (differs in train.kappa)" in str(err.value)
    assert "\n" not in str(err.value)
    # where it runs is not what it computes: threads and device may change
    resumed = search(tiny_config.replace(threads=2, device="cpu"), tiny_data, state=state)
    assert resumed.resumed_from == 1


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_a_file_that_is_not_a_search_checkpoint_is_refused(
        tiny_config, tiny_data, tmp_path: Path, content: bytes) -> None:
    state = tmp_path / "state.pt"
    state.write_bytes(content)
    with pytest.raises(DataError, match="not a search checkpoint"):
        search(tiny_config, tiny_data, state=state)


def test_a_checkpoint_that_would_run_code_is_refused(
        tiny_config, tiny_data, tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    state = tmp_path / "state.pt"
    torch.save({"kind": "search-state", "version": 1, "x": Payload()}, state)
    with pytest.raises(DataError, match="refused to load it"):
        search(tiny_config, tiny_data, state=state)
    assert not (tmp_path / "pwned").exists()


def tiny_task(tmp_path: Path, folder: str) -> TrialTask:
    spec = load_study(TINY_SLOW)
    params = {"kappa": 1.0, "t_start": 1.0, "t_end": 0.2, "schedule": "linear"}
    return TrialTask(number=0, params=params, spec=spec, seed=0, reference=10_000.0,
                     checkpoint=tmp_path / folder / "trial-0.pt", threads=1)


@pytest.mark.slow
def test_a_trial_interrupted_at_epoch_k_resumes_and_records_it(tmp_path: Path) -> None:
    whole = run_trial(tiny_task(tmp_path, "whole"))
    assert whole.state == TrialState.COMPLETE and whole.record.resumed_from is None
    task = tiny_task(tmp_path, "cut")

    def interrupt(metrics, history) -> None:
        if metrics.epoch == 1:
            raise KeyboardInterrupt

    cut = run_trial(task, interrupt)
    assert cut.interrupted and cut.requeue
    (state,) = (tmp_path / "cut" / "resume").iterdir()  # the resume point was kept
    again = run_trial(task)
    assert again.state == TrialState.COMPLETE
    assert again.record.resumed_from == 2
    assert again.values == whole.values  # bit for bit
    assert again.record.device == {"device": "cpu"} and again.record.precision == "fp32"
    assert not state.exists()  # the trial is done: its resume point is gone
    # a pruned search would be pruned again: its point is not kept either
    import optuna

    def prune(metrics, history) -> None:
        raise optuna.TrialPruned

    pruned = run_trial(tiny_task(tmp_path, "pruned"), prune)
    assert pruned.state == TrialState.PRUNED
    assert not any((tmp_path / "pruned" / "resume").iterdir())


@pytest.mark.slow
def test_hpo_run_killed_mid_trial_resumes_the_search_on_the_next_run(cli: Hpo) -> None:
    """A real SIGKILL of ``hpo run`` after an epoch's checkpoint; the next run re-enqueues
    the trial, which resumes its search and scores exactly what an uninterrupted run does."""
    study = cli.write_study(setting("fidelity.epochs", 5), base=TINY_SLOW)
    reference = Hpo(cli.tmp / "ref", cli._capsys)
    result = reference.run("--trials", 1, "--name", "ref", study=study)
    assert result.code == 0, result.err
    (expected,) = reference.trials("ref")

    resume = cli.artifacts / "tiny_slow" / "resume"
    proc = subprocess.Popen(cli.subprocess_argv("run", "--study", study, "--trials", 1),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (resume.exists() and any(resume.glob("*.pt"))):
            assert proc.poll() is None, "hpo run ended before its first epoch's checkpoint"
            assert time.monotonic() < deadline, "no resume checkpoint appeared"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = cli.run("--study", study, "--trials", 1)
    assert result.code == 0, result.err
    trials = cli.trials("tiny_slow")
    assert states(trials) == {"FAIL": 1, "COMPLETE": 1}
    (done,) = of_state(trials, TrialState.COMPLETE)
    assert done.user_attrs["retry_of"] == of_state(trials, TrialState.FAIL)[0].number
    assert 1 <= done.user_attrs["resumed_from"] <= 5  # killed after its first epoch, or later
    assert done.values == expected.values
    assert not any(resume.glob("*.pt"))


def test_a_retry_searches_with_its_original_trials_seed(cli: Hpo) -> None:
    import optuna

    study = optuna.create_study()
    study.enqueue_trial({"x": 1.0})
    first = study.ask()
    study.tell(first, state=TrialState.FAIL)
    study.enqueue_trial({"x": 1.0}, user_attrs={"retry_of": first.number})
    second = study.ask()
    study.tell(second, state=TrialState.FAIL)
    study.enqueue_trial({"x": 1.0}, user_attrs={"retry_of": second.number})
    third = study.ask()
    assert [seed_number(study, t) for t in (first, second, third)] == [0, 0, 0]
    assert seed_number(study, study.ask()) == 3  # a new trial: its own number


# ---------------------------------------------------------------------------------------------
# placement and threads


def test_gpu_slots_spread_workers_over_gpus() -> None:
    assert gpu_slots(["0", "1"], 1) == ["0", "1"]
    assert gpu_slots(["0", "1"], 2) == ["0", "1", "0", "1"]
    slots = gpu_slots(["3"], 4)
    assert [worker_gpu(i, slots) for i in range(6)] == ["3"] * 6
    assert [worker_gpu(i, ["0", "1"]) for i in range(5)] == ["0", "1", "0", "1", "0"]
    with pytest.raises(ConfigError, match="--trials-per-gpu"):
        gpu_slots(["0"], 0)


def test_visible_gpus_follow_cuda_visible_devices() -> None:
    assert parse_visible("") == [] and parse_visible("-1") == []
    assert parse_visible("2, 5") == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}, count=2) == ["2", "5"]
    assert visible_gpus({}, count=3) == ["0", "1", "2"]
    assert visible_gpus({}, count=0) == []
    if not CUDA:
        assert visible_gpus({}) == []


def test_threads_per_trial_share_the_cpus_between_concurrent_trials() -> None:
    assert threads_for(16, 4) == 4  # a 16-core GPU host, 4 trials at once
    assert threads_for(16, 8) == 2
    assert threads_for(2, 1) == 2  # one search alone uses both cores
    assert threads_for(2, 5) == 1
    assert threads_for(1, 0) == 1


def test_a_gpu_host_gets_trials_per_gpu_workers_with_their_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import hpo.options
    import search_core.threads

    monkeypatch.setattr(hpo.options, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(hpo.options, "usable_cpus", lambda: 16)
    monkeypatch.setattr(search_core.threads, "usable_cpus", lambda: 16)
    spec = load_study(TINY)
    options = with_jobs(RunOptions(study_path=str(TINY), trials=100, trials_per_gpu=3), spec)
    assert options.jobs == 6 and options.gpus == ("0", "1", "0", "1", "0", "1")
    assert trial_threads(options) == 2  # 16 cores / 6 trials
    few = with_jobs(RunOptions(study_path=str(TINY), trials=1, trials_per_gpu=3), spec)
    assert few.jobs == 1 and trial_threads(few) == 16
    cpu = with_jobs(RunOptions(study_path=str(TINY), trials=100),
                    with_run_settings(spec, device="cpu"))
    assert cpu.gpus == () and cpu.jobs == 16 and trial_threads(cpu) == 1
    named = with_jobs(RunOptions(study_path=str(TINY), trials=100),
                      with_run_settings(spec, device="cuda:1"))
    assert named.gpus == ()  # one named GPU for every worker: no placement


def test_each_local_worker_sees_only_its_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    options = RunOptions(study_path=None, gpus=("1", "2"))
    with worker_gpu_environment(3, options):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    with worker_gpu_environment(0, RunOptions(study_path=None)):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1,2"


def test_ray_trials_ask_for_their_share_of_a_gpu() -> None:
    options = RunOptions(study_path=None, backend="ray",
                         ray=RayOptions(cpus_per_trial=2, gpus_per_trial=0.25))
    assert trial_resources(options) == {"cpu": 2, "gpu": 0.25}
    assert trial_resources(RunOptions(study_path=None, backend="ray")) == {"cpu": 1}


# ---------------------------------------------------------------------------------------------
# the command line and study files


def test_run_settings_keep_the_fingerprint_except_precision() -> None:
    spec = load_study(TINY)
    assert with_run_settings(spec, device="cuda").fingerprint() == spec.fingerprint()
    assert with_run_settings(spec, precision="bf16").fingerprint() != spec.fingerprint()
    assert with_run_settings(spec, precision="fp32").fingerprint() == spec.fingerprint()


@no_cuda
@pytest.mark.parametrize("how", ["flag", "study"])
def test_cuda_without_cuda_is_one_line_and_exit_2_before_anything_is_written(
        cli: Hpo, how: str) -> None:
    if how == "flag":
        result = cli.run("--trials", 1, "--device", "cuda")
    else:
        result = cli.run("--trials", 1, study=cli.write_study(setting("device", "cuda")))
    assert result.code == 2
    assert len(result.err_lines) == 1 and "no CUDA GPU" in result.err
    assert cli.nothing_written()


@pytest.mark.parametrize(("args", "message"), [
    (("--device", "gpu"), "--device: got 'gpu'"),
    (("--precision", "fp8"), "invalid choice"),
    (("--gpus-per-trial", "0.5"), "--gpus-per-trial needs --backend ray"),
    (("--trials-per-gpu", "0"), "--trials-per-gpu: got 0"),
])
def test_bad_placement_flags_are_refused(cli: Hpo, args: tuple[str, ...], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    try:
        result = cli.run("--trials", 1, *args)
        code, err = result.code, result.err
    except SystemExit as exit_:  # argparse's own refusal
        code, err = int(exit_.code or 0), capsys.readouterr().err
    assert code == 2 and message in err
    assert cli.nothing_written()


def test_device_belongs_at_the_top_of_a_study_file(cli: Hpo) -> None:
    result = cli.run("--trials", 1, study=cli.write_study(setting("search.device", "cpu")))
    assert result.code == 2
    assert "search.device: set device at the top level" in result.err


@pytest.mark.parametrize(("key", "value", "message"), [
    ("search.data", {"name": "fashion-mnist"}, "search.data: set the data set in the top-level"),
    ("search.seed", 7, "search.seed: a trial's search seed is the run's --seed"),
])
def test_settings_the_run_would_overwrite_are_refused_under_search(
        cli: Hpo, key: str, value: object, message: str) -> None:
    """They were silently replaced by the top-level data section and the run's seed."""
    result = cli.run("--trials", 1, study=cli.write_study(setting(key, value)))
    assert result.code == 2 and len(result.err_lines) == 1
    assert message in result.err
    assert cli.nothing_written()


def test_a_trial_records_its_device_and_precision(cli: Hpo) -> None:
    result = cli.run("--trials", 1, "--precision", "bf16", "--device", "cpu")
    assert result.code == 0, result.err
    (trial,) = cli.trials("tiny")
    assert trial.user_attrs["device"] == {"device": "cpu"}
    assert trial.user_attrs["precision"] == "bf16"
    assert cli.study("tiny").user_attrs["study_file"]["precision"] == "bf16"
    # resuming in another precision computes something else: refused
    again = cli.run("--trials", 2)
    assert again.code == 2 and "different study file" in again.err


@pytest.mark.slow
def test_train_config_epochs_of_a_resumed_state_are_checked(tiny_data, tmp_path: Path) -> None:
    config = SearchConfig(train=TrainConfig(epochs=2, batch_size=64), threads=1,
                          data=dataclasses.replace(SearchConfig().data, train_limit=100,
                                                   val_limit=50))
    state = tmp_path / "s.pt"
    with pytest.raises(Stop):
        search(config, on_epoch=stop_after(0), state=state)
    longer = config.replace(train=dataclasses.replace(config.train, epochs=3))
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        search(longer, state=state)


def test_a_strided_depthwise_conv_under_cpu_autocast_computes_the_strided_conv() -> None:
    """The bf16 fast path runs strided depthwise convs unstrided and subsamples (oneDNN's
    strided bf16 backward is slow): the same values and gradients, to bf16 rounding."""
    from search_core.fastpath import conv

    torch.manual_seed(0)
    module = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False)
    x = torch.randn(4, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    plain = x.clone().requires_grad_()
    fast = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = module(plain)
        got = conv(module, fast)
    assert got.shape == expected.shape == (4, 8, 5, 5)
    assert torch.allclose(got.float(), expected.float(), atol=2e-2, rtol=2e-2)
    expected.float().square().sum().backward()
    got.float().square().sum().backward()
    assert torch.allclose(fast.grad, plain.grad, atol=5e-2, rtol=5e-2)
    # without autocast it is the module's own conv, exactly
    assert torch.equal(conv(module, x), module(x))


@no_cuda
def test_compare_with_cuda_missing_is_refused_before_anything_is_written(cli: Hpo) -> None:
    result = cli("compare", "--study", TINY, "--samplers", "random,tpe", "--trials", 1,
                 "--repeats", 1, "--artifacts", cli.artifacts, "--device", "cuda", "-q")
    assert result.code == 2 and "no CUDA GPU" in result.err
    assert cli.nothing_written()


@no_cuda
def test_ray_gpu_shares_need_gpus_unless_a_cluster_brings_them() -> None:
    from hpo.runner import check_device

    spec = load_study(TINY)
    local_ray = RunOptions(study_path=None, backend="ray", ray=RayOptions(gpus_per_trial=0.5))
    with pytest.raises(ConfigError, match="--gpus-per-trial: this machine has no CUDA GPU"):
        check_device(spec, local_ray)
    cluster = RunOptions(study_path=None, backend="ray",
                         ray=RayOptions(address="127.0.0.1:6379", gpus_per_trial=0.5))
    check_device(with_run_settings(spec, device="cuda"), cluster)  # its nodes may have them
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        check_device(with_run_settings(spec, device="cuda"), RunOptions(study_path=None))
