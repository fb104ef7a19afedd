"""One trial: the Tune function trainable (`trainable`), the run config a trial trains
with (`trial_config`), its console output and scratch folder (`trial_output`,
`trial_workdir`), how it ended (`status`), its dataset on the node that trains it
(`node_data`) and the searcher that tells Optuna what ASHA did (`searcher`).

Imports: `search.store`, `search.cluster`, `search.space`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`AshaAwareOptunaSearch`, `BEFORE_FIRST_EVALUATION`, `CATEGORIES`, `COMPLETED`, `data_record`,
`data_section`, `ERRORED`, `is_early_stopped`, `output_to_file`, `planned_budget`,
`prepare_on_node`, `revalidate_record`, `status_category`, `train_detr`, `train_finalist`,
`trial_run_config`, `trial_status`, `trial_threads`, `trial_values`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "AshaAwareOptunaSearch": "searcher",
    "BEFORE_FIRST_EVALUATION": "status",
    "CATEGORIES": "status",
    "COMPLETED": "status",
    "ERRORED": "status",
    "data_record": "node_data",
    "data_section": "node_data",
    "is_early_stopped": "status",
    "output_to_file": "trial_output",
    "planned_budget": "status",
    "prepare_on_node": "node_data",
    "revalidate_record": "node_data",
    "status_category": "status",
    "train_detr": "trainable",
    "train_finalist": "trainable",
    "trial_run_config": "trial_config",
    "trial_status": "status",
    "trial_threads": "trial_config",
    "trial_values": "trial_config",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
