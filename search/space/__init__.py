"""The space file: YAML in (`spec_loading`, `experiment_section`, `space_section`), the
`SearchSpec` (`spec`), distributions (`distributions`), ranges stated relative to the
checkpoint's recipe (`relative_ranges`; per trial when the model is searched:
`per_trial_recipes`), ASHA's budget in optimizer steps (`budget`), the points tried first
(`start_points`), the Tune param space (`tune_space`) and the checks of what a space points
to (`preflight`). A new searchable hyperparameter needs no code here when it is a run-config
key or a `TrainingArguments` field.

Imports: `search.store`, `search.cluster`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`absolute_values`, `build_sampler`, `check_search_inputs`, `default_max_concurrent`,
`describe_distribution`, `describe_sampler`, `enqueue_points`, `factor_values`, `fits`,
`fixed_values_of`, `format_number`, `format_value`, `is_distribution`, `is_number`,
`load_search_spec`, `log_scale_keys_of`, `per_trial_keys`, `quantize_params`,
`read_spec_file`, `recipe_lines`, `relative_note`, `same_value`, `SAMPLERS`, `SearchSpec`,
`searched_model_keys`, `to_tune_param_space`, `write_spec_file`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "SAMPLERS": "samplers",
    "SearchSpec": "spec",
    "absolute_values": "per_trial_recipes",
    "factor_values": "per_trial_recipes",
    "per_trial_keys": "per_trial_recipes",
    "searched_model_keys": "per_trial_recipes",
    "check_search_inputs": "preflight",
    "default_max_concurrent": "budget",
    "describe_distribution": "distributions",
    "enqueue_points": "start_points",
    "fits": "distributions",
    "fixed_values_of": "distributions",
    "format_number": "distributions",
    "format_value": "distributions",
    "is_distribution": "distributions",
    "is_number": "distributions",
    "load_search_spec": "spec_loading",
    "log_scale_keys_of": "distributions",
    "quantize_params": "distributions",
    "read_spec_file": "spec",
    "recipe_lines": "relative_ranges",
    "relative_note": "relative_ranges",
    "same_value": "distributions",
    "to_tune_param_space": "tune_space",
    "build_sampler": "samplers",
    "describe_sampler": "samplers",
    "write_spec_file": "spec",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
