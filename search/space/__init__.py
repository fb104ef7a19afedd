"""The space file: YAML in (`spec_loading`, `experiment_section`, `space_section`), the
`SearchSpec` (`spec`), distributions (`distributions`), ranges stated relative to the
checkpoint's recipe (`relative_ranges`), ASHA's budget in optimizer steps (`budget`), the
Tune param space (`tune_space`) and the checks of what a space points to (`preflight`). A
new searchable hyperparameter needs no code here when it is a run-config key or a
`TrainingArguments` field.

Imports: `search.store`, `search.cluster`; `detr_core` through its public names.

Public names (other packages import these, not the modules; each is imported on first use):
`check_search_inputs`, `default_max_concurrent`, `describe_distribution`, `fixed_values_of`,
`format_number`, `format_value`, `is_distribution`, `load_search_spec`, `log_scale_keys_of`,
`quantize_params`, `read_spec_file`, `recipe_lines`, `relative_note`, `SearchSpec`,
`to_tune_param_space`, `write_spec_file`.
"""

from __future__ import annotations

from search.store import lazy_public_names

#: public name -> the module of this package that defines it
_HOME = {
    "SearchSpec": "spec",
    "check_search_inputs": "preflight",
    "default_max_concurrent": "budget",
    "describe_distribution": "distributions",
    "fixed_values_of": "distributions",
    "format_number": "distributions",
    "format_value": "distributions",
    "is_distribution": "distributions",
    "load_search_spec": "spec_loading",
    "log_scale_keys_of": "distributions",
    "quantize_params": "distributions",
    "read_spec_file": "spec",
    "recipe_lines": "relative_ranges",
    "relative_note": "relative_ranges",
    "to_tune_param_space": "tune_space",
    "write_spec_file": "spec",
}

__all__ = sorted(_HOME)

__getattr__ = lazy_public_names(__name__, _HOME, globals())
