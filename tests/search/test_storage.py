"""The storage adapter against real SQLite files."""

from __future__ import annotations

import threading
from pathlib import Path

import optuna

from search.storage import make_storage


def test_workers_starting_together_on_sqlite_never_run_one_queued_trial_twice(tmp_path: Path) -> None:
    # Optuna claims a queued (WAITING) trial by SELECT ... FOR UPDATE, then UPDATE; SQLite has no
    # FOR UPDATE, so two workers could both read WAITING and both run it (seen: two MLflow runs
    # "trial-0" training the same baseline on the IMDB bench). Each thread here has its own
    # storage (own engine and connections), as separate worker processes do.
    url = f"sqlite:///{tmp_path}/race.db"
    n_workers, rounds = 4, 8
    optuna.create_study(study_name="race", storage=make_storage(url), direction="maximize")
    storages = [make_storage(url) for _ in range(n_workers)]
    studies = [optuna.load_study(study_name="race", storage=s) for s in storages]
    for r in range(rounds):
        studies[0].enqueue_trial({"x": float(r)})
        barrier = threading.Barrier(n_workers)
        claimed: list[int] = []

        def ask(study: optuna.Study, barrier: threading.Barrier = barrier, claimed: list[int] = claimed) -> None:
            barrier.wait()
            trial = study.ask()
            trial.suggest_float("x", -1.0, 100.0)
            claimed.append(trial._trial_id)

        threads = [threading.Thread(target=ask, args=(s,)) for s in studies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(claimed) == n_workers and len(set(claimed)) == n_workers, f"round {r}: {claimed}"
        for trial_id in claimed:
            storages[0].set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [0.0])
    trials = studies[0].get_trials()
    assert len(trials) == rounds * n_workers
    assert sorted(t.params["x"] for t in trials if t.params["x"] == int(t.params["x"]) and t.params["x"] < rounds
                  and "fixed_params" in t.system_attrs) == [float(r) for r in range(rounds)]
