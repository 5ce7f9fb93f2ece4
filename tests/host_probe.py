"""Run on a test host (``tests/hosts.py``): print study ``argv[2]``'s trials in storage
``argv[1]`` as JSON lines (the test process itself cannot reach the hosts' addresses)."""

from __future__ import annotations

import json
import sys

import optuna

from hpo.storage import open_storage, study_names


def main(url: str, name: str) -> None:
    storage = open_storage(url)
    if name not in study_names(storage):
        return
    study = optuna.load_study(study_name=name, storage=storage)
    for trial in study.get_trials(deepcopy=False):
        print(json.dumps({"number": trial.number, "state": trial.state.name,
                          "params": trial.params, "values": trial.values,
                          "epochs": len(trial.intermediate_values),
                          "completed": trial.datetime_complete.timestamp()
                          if trial.datetime_complete else None,
                          "attrs": trial.user_attrs, "system": trial.system_attrs},
                         default=str))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
