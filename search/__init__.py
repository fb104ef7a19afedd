"""search: Ray Tune + Optuna (TPE) + ASHA searches over DETR fine-tuning runs.

Sub-packages, bottom layer first (each `__init__` says what it holds and may import;
tests/test_layers.py holds the layers): store, cluster, space, trial, results, lineage, resume,
running.

A search, as the data flows (`python search/run.py --space search_spaces/iou.yaml`):

    run.py -> space.load_search_spec (YAML checked, exit 2 on a bad key)
           -> space.check_search_inputs, running.choose_experiment,
              lineage.plan_warm_start (--warm-start) -> running.describe (plan)
           -> running.run_search: trial.data_record (data checked once, on the driver),
              store (experiment folder, search_spec.yaml, prepared_data.json),
              cluster.LocalCluster + Ray, Tuner(trial.train_detr, space.to_tune_param_space,
              OptunaSearch (trial.AshaAwareOptunaSearch) + ASHA, store.journal_storage)
              -> each trial: trial.trial_run_config -> detr_core.train.train_run
                 -> tune.report at every evaluation (eval_* metrics, step, checkpoint)
           -> results.export_experiment: results.reading -> winner -> best_model/,
              best_config.yaml, trials.csv, plots/, REPORT.md (+ running.finalists),
              warm-start trials read back from warm_start.json (results.warm_trials)
    export.py --compare A B ... -> results.compare_experiments -> COMPARE.md + plots

Where to add: a new hyperparameter needs no code (a run-config key or TrainingArguments
field); a new metric is named in `detr_core/config/metric_names.py` and computed in
`detr_core/evaluation/metrics.py`; a new storage backend is whatever `pyarrow.fs` resolves
(`store/storage.py`).
"""
