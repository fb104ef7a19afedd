"""Make the checkpoint the embedded default fine-tunes (`builtin:tiny-shapes`): the tiny preset
trained once on a *different* synthetic task, so that the default fine-tunes a pretrained DETR
on new classes as users do (from scratch is far too slow for minutes on a CPU).
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detr_core.config.run_config import load_run_config, run_config_to_dict
from detr_core.files.builtin_models import CHECKPOINT_FILES
from detr_core.files.errors import ArgumentParser, UserInputError, exit_on_user_error
from detr_core.model.families import FAMILIES, tiny_preset

DEFAULT_PRETRAIN_CONFIG = Path(__file__).parents[1] / "defaults" / "pretrain.yaml"
PROVENANCE_FILE = "pretraining.json"
REPORTED = ("map_50", "recall", "map", "map_75", "iou_mean", "center_error_px", "missed",
            "num_gt")


def pretrain(config_path: Path, output_dir: Path, work_dir: Path) -> dict[str, Any]:
    """Train per `config_path`, then write the checkpoint folder; returns its provenance."""
    import torch
    import transformers

    from detr_core.train import train_run
    config = load_run_config(config_path)
    if config.model.preset is None:
        raise UserInputError("pretraining starts from `preset: tiny`, not from a checkpoint",
                             source=config_path, key="model")
    started = time.perf_counter()
    result = train_run(config, work_dir)
    wall = time.perf_counter() - started
    test = result.test_metrics or {}
    provenance = {
        "command": "python -m detr_core.pretrain " + " ".join(sys.argv[1:]),
        "config_file": str(config_path), "run_config": run_config_to_dict(config),
        "best_step": result.best_step, "max_steps": result.max_steps,
        "selected_by": {"metric": result.metric_name, "value": result.best_metric},
        "wall_time_s": round(wall, 1), "steps_per_s": round(result.max_steps / wall, 2),
        "test_metrics": {k: test.get(k) for k in REPORTED},
        "per_class_ap": test.get("per_class_ap", {}), "eval_history": result.history,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "threads": torch.get_num_threads(), "platform": platform.platform()},
    }
    staging = output_dir.with_name(output_dir.name + ".staging")  # whole, then renamed
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        shutil.copy2(result.best_model_dir / name, staging / name)
    (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    if output_dir.exists():
        shutil.rmtree(output_dir)
    staging.rename(output_dir)
    return provenance


def render_report(provenance: dict[str, Any], output_dir: Path) -> str:
    """How the checkpoint was made, as Markdown (results/benchmarks/pretrained_checkpoint.md)."""
    cfg, test, machine = provenance["run_config"], provenance["test_metrics"], provenance["machine"]
    syn, args = cfg["data"]["synthetic"], cfg["training_args"]
    size_kb = sum((output_dir / n).stat().st_size for n in CHECKPOINT_FILES) / 1024
    rows = "\n".join(f"| {k} | {_fmt(test.get(k))} |" for k in REPORTED)
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in provenance["per_class_ap"].items())
    history = "\n".join(
        f"| {h['step']} | {_fmt(h.get('eval_map_50'))} | {_fmt(h.get('eval_recall'))} | "
        f"{_fmt(h.get('eval_loss_bbox'))} |" for h in provenance["eval_history"])
    family = FAMILIES[cfg["model"].get("family") or "detr"]
    preset = ", ".join(f"{k} {v}" for k, v in tiny_preset(family.model_type).items()
                       if k in ("d_model", "encoder_layers", "decoder_layers", "num_queries"))
    return f"""# The shipped checkpoint `builtin:{output_dir.name}`

Made by `{provenance["command"]}` (config `{Path(provenance["config_file"]).name}`), on
{machine["platform"]}, torch {machine["torch"]}, transformers {machine["transformers"]},
{machine["threads"]} threads.

- Model: the `tiny` preset of {family.title} ({preset}; ResNet-ish backbone of ~0.3 M
  parameters) from random weights; folder size {size_kb:.0f} KB
  ({", ".join(CHECKPOINT_FILES)}).
- Pretraining data: synthetic task `{syn["task"]}`: stars, crosses, rings, pentagons (rotated;
  gradient and striped backgrounds; {syn["min_objects"]}-{syn["max_objects"]} objects per image,
  18-45 % of the side), {syn["image_size"]} px, {syn["num_train"]} / {syn["num_val"]} /
  {syn["num_test"]} train / val / test images, generator seed {syn["seed"]}.
  Fine-tuning task of the embedded default: rectangles, ellipses, triangles (1-3 objects,
  15-50 % of the side, dark noisy backgrounds): no class in common.
- Schedule: {provenance["max_steps"]} optimizer steps, batch {args["per_device_train_batch_size"]},
  AdamW lr {args["learning_rate"]}, warmup {args["warmup_steps"]}, linear decay, evaluation every
  {args["logging_steps"]} steps; kept: step {provenance["best_step"]} (best
  `{provenance["selected_by"]["metric"]}` = {_fmt(provenance["selected_by"]["value"])}).
- Wall time: {provenance["wall_time_s"] / 60:.1f} min ({provenance["steps_per_s"]} steps/s
  including evaluations) on this machine.

## Its own task (test split, score threshold {cfg["evaluation"]["score_threshold"]})

| metric | value |
| --- | --- |
{rows}

Per-class AP: {per_class}.

## Val curve

| step | mAP@.5 | recall | loss_bbox |
| --- | --- | --- | --- |
{history}
"""


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m detr_core.pretrain", description="Pretrain the tiny "
                            "DETR and write the checkpoint the embedded default fine-tunes.")
    parser.add_argument("--output-dir", type=Path, required=True,
                        help="checkpoint folder to write (e.g. detr_core/builtin/tiny-shapes)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PRETRAIN_CONFIG,
                        help="pretraining run YAML (default: detr_core/defaults/pretrain.yaml)")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/pretrain"),
                        help="the training run's folder (default: outputs/pretrain)")
    parser.add_argument("--report", type=Path, help="also write how it was made as Markdown here")
    args = parser.parse_args(argv)
    provenance = pretrain(args.config, args.output_dir, args.work_dir)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render_report(provenance, args.output_dir), encoding="utf-8")
    test = provenance["test_metrics"]
    print(f"checkpoint: {args.output_dir} (step {provenance['best_step']}, test mAP@.5 "
          f"{_fmt(test.get('map_50'))}, recall {_fmt(test.get('recall'))}, "
          f"{provenance['wall_time_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
