"""search: Ray Tune + Optuna (TPE) + ASHA searches over DETR fine-tuning runs.

- `run.py` the CLI (`cli.py` its flags and the plan it prints), `driver.py` wires the `Tuner`;
- before anything starts: `preflight.py` (checkpoints, augmentations, data and every image);
- stopping: `interrupt.py` (Ctrl-C / SIGTERM), `resume_command.py` (the last line printed),
  `local_cluster.py` with `orphans.py` and `watchdog.py` (a local Ray cluster's processes end
  with the driver, however it dies);
- the spec: `spec_loading.py` reads a space file (`experiment_section.py`, `space_section.py`,
  `distributions.py`, `budget.py`) into a `spec.SearchSpec`; `tune_space.py` makes Tune domains;
- a trial: `trial_config.py` (its values and run config), `trainable.py` (one detr_core run),
  `trial_output.py` (its log file), `searcher.py` (Optuna that knows ASHA's early stops),
  `trial_status.py` (how it ended);
- while it runs: `console.py` (progress), `tensorboard_hparams.py`, `time_budget.py`;
- afterwards: `export.py` rebuilds the outputs from the folder (`results.py`, `winner.py`,
  `best_model.py`, `winner_eval.py`, `trials_csv.py`, `importance.py`, `plots.py`,
  `report.py`), `final_seeds.py` retrains the winner; `layout.py` names every file;
- where it all lives: `storage.py` (a local folder or any `pyarrow.fs` URI such as s3://),
  `naming.py` (`iou`, `iou-2`, ...), `study_journal.py` (the Optuna journal on any storage),
  `node_data.py` (the dataset made or checked on the node that trains).
"""
