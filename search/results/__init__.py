"""Afterwards: every trial read back from its folder (`reading`), the winner and its
evaluation (`winner`, `winner_eval`, `best_model`, `final_seeds`), trials.csv, plots,
importances, REPORT.md and the export that writes them all (`trials_csv`, `plots`,
`importance`, `report`, `summary`, `formatting`, `export`) and the HParams written to
TensorBoard (`tensorboard_hparams`).

Imports: `search.store`, `search.cluster`, `search.space`, `search.trial`; `detr_core` through
its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`choose_winner`, `copy_report`, `export_experiment`, `HParamsLoggerCallback`, `load_trials`,
`read_checkpoints`, `read_ray_states`, `read_results`, `run_final_seeds`, `TrialRecord`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "HParamsLoggerCallback": "tensorboard_hparams",
    "TrialRecord": "reading",
    "choose_winner": "winner",
    "copy_report": "export",
    "export_experiment": "export",
    "load_trials": "reading",
    "read_checkpoints": "best_model",
    "read_ray_states": "reading",
    "read_interrupt_record": "reading",
    "read_results": "reading",
    "run_final_seeds": "final_seeds",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
