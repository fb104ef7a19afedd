"""Afterwards: every trial read back from its folder (`reading`), the winner and its
evaluation (`winner`, `winner_eval`, `best_model`), the finalists stage's plan and outcome
(`finalists`), trials.csv, plots,
importances, REPORT.md and the export that writes them all (`trials_csv`, `plots`,
`importance`, `report`, `summary`, `formatting`, `export`), the HParams written to
TensorBoard (`tensorboard_hparams`), the warm-start trials a search was seeded with
(`warm_trials`, `warm_start.json`) and COMPARE.md over a sequence of searches (`compare`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`; `detr_core` through
its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`choose_winner`, `compare_experiments`, `copy_report`, `export_experiment`, `FinalistPlan`,
`FinalistRun`, `FinalistsOutcome`, `find_trial_dirs`, `HParamsLoggerCallback`, `kept_result`,
`load_trials`, `model_folder`, `plan_finalists`, `read_checkpoints`, `read_finalists`,
`read_plan`, `read_ray_states`, `read_results`, `read_warm_start_record`, `select_checkpoint`,
`SourceSummary`, `TrialRecord`, `WarmStartRecord`, `WarmTrial`, `write_plan`,
`write_warm_start_record`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "HParamsLoggerCallback": "tensorboard_hparams",
    "SourceSummary": "warm_trials",
    "TrialRecord": "reading",
    "WarmStartRecord": "warm_trials",
    "WarmTrial": "warm_trials",
    "compare_experiments": "compare",
    "kept_result": "warm_trials",
    "read_warm_start_record": "warm_trials",
    "write_warm_start_record": "warm_trials",
    "choose_winner": "winner",
    "copy_report": "export",
    "export_experiment": "export",
    "find_trial_dirs": "reading",
    "load_trials": "reading",
    "read_checkpoints": "best_model",
    "read_ray_states": "reading",
    "read_interrupt_record": "reading",
    "read_results": "reading",
    "FinalistPlan": "finalists",
    "FinalistRun": "finalists",
    "FinalistsOutcome": "finalists",
    "plan_finalists": "finalists",
    "read_finalists": "finalists",
    "read_plan": "finalists",
    "write_plan": "finalists",
    "model_folder": "best_model",
    "select_checkpoint": "best_model",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
