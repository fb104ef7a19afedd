"""The experimental `asha_tpe_rung` strategy tells Optuna each trial's first-rung value.

A stopped trial and a finished one both become COMPLETE trials whose value is what they scored
at the rung (not their last or best value), with their values by step kept as intermediate
values. Driven through the searcher's Tune-facing methods, no Ray.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from benchmarks.search_efficiency import first_rung_searcher


def test_every_trial_is_told_its_value_at_the_first_rung(tmp_path) -> None:
    from ray import tune

    from search.store.study_journal import journal_storage

    searcher = first_rung_searcher()(
        space={"lr": tune.loguniform(1e-4, 1e-2)}, metric="eval_map_50", mode="max",
        sampler=optuna.samplers.TPESampler(seed=0), study_name="t",
        storage=journal_storage(tmp_path), max_t=1500, rung=500)
    for trial_id in ("stopped", "finished"):
        assert searcher.suggest(trial_id) is not None
    searcher.on_trial_result("stopped", {"eval_map_50": 0.5, "step": 250})
    searcher.on_trial_complete("stopped", {"eval_map_50": 0.6, "step": 500, "total_steps": 1500})
    for step, value in ((500, 0.62), (1000, 0.75)):
        searcher.on_trial_result("finished", {"eval_map_50": value, "step": step})
    searcher.on_trial_complete("finished", {"eval_map_50": 0.81, "step": 1500,
                                            "total_steps": 1500})
    trials = searcher.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert [t.value for t in trials] == [0.6, 0.62]
    assert trials[1].intermediate_values == {500: 0.62, 1000: 0.75, 1500: 0.81}
