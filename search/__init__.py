"""search: Ray Tune + Optuna (TPE) + ASHA searches over DETR fine-tuning runs.

`run.py` is the CLI, `space.py` turns a YAML space file into a validated spec and a Tune
space, `trainable.py` wraps one `detr_core` run as a Tune function trainable, `searcher.py`
is the Optuna searcher that knows about ASHA's early stops, `driver.py` wires the `Tuner`,
and `export.py` writes the best config, the best model, the trials table and REPORT.md.
"""
