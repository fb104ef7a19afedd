"""detr_core.training.ema in a real run: the averaged weights are what is evaluated, chosen and
exported.

The average is checked by hand: the raw weights after every optimizer step are recorded and
averaged in the test with the documented rule (decay 0 at step 1, then
`min(decay, 1 - t ** -warmup_power)`), independently of timm.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import DetrForObjectDetection

import detr_core.train
from detr_core.config.run_config import run_config_from_dict
from detr_core.evaluate import evaluate_prepared
from detr_core.files.file_io import EMA_DIR
from detr_core.training.ema import EmaCallback, weights_folder
from detr_core.training.preflight import check_run_inputs

pytestmark = pytest.mark.slow

DECAY, POWER = 0.6, 1.0  # decays 0, .5, .6, .6, ...: the warm-up and the cap both show


def by_hand(snapshots: dict[int, dict[str, torch.Tensor]], upto: int) -> dict[str, torch.Tensor]:
    """The moving average of the recorded raw weights after step `upto`."""
    average: dict[str, torch.Tensor] = {}
    for step in range(1, upto + 1):
        decay = 0.0 if step == 1 else min(DECAY, 1 - step ** -POWER)
        for name, value in snapshots[step].items():
            if name not in average or not value.is_floating_point():
                average[name] = value.clone()
            else:
                average[name] = decay * average[name] + (1 - decay) * value
    return average


def test_averaged_weights_are_evaluated_chosen_and_exported(
        tmp_path: Any, tiny_run_dict: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    recorders: list[EmaCallback] = []

    class RecordingEma(EmaCallback):
        """Notes the raw weights after every step, before the average takes them in."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
            recorders.append(self)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                        **kw: Any):
            self.snapshots[state.global_step] = {
                k: v.detach().clone() for k, v in model.state_dict().items()}
            return super().on_step_end(args, state, control, model=model, **kw)

    monkeypatch.setattr(detr_core.train, "EmaCallback", RecordingEma)
    raw = tiny_run_dict
    raw["ema"] = {"decay": DECAY, "warmup_power": POWER}
    raw["evaluation"]["score_threshold"] = 0.0  # every query counts: IoU numbers move with weights
    raw["training_args"].update(max_steps=6, logging_steps=2, learning_rate=5e-3,
                                metric_for_best_model="eval_ema_loss_bbox")
    config = run_config_from_dict(raw)
    result = detr_core.train.train_run(config, tmp_path / "run", evaluate_test=False)

    # chosen by the average's metric, among the evaluations at steps 2, 4, 6
    history = {int(row["step"]): row for row in result.history}
    assert sorted(history) == [2, 4, 6]
    assert all("eval_ema_map_50" in row and "eval_map_50" in row for row in history.values())
    best = min(history, key=lambda s: history[s]["eval_ema_loss_bbox"])
    assert result.best_step == best
    assert result.best_metric == pytest.approx(history[best]["eval_ema_loss_bbox"])

    # the exported model is the hand-made average at that step, not the raw weights
    snapshots = recorders[0].snapshots
    assert sorted(snapshots) == [1, 2, 3, 4, 5, 6]
    expected = by_hand(snapshots, best)
    exported = DetrForObjectDetection.from_pretrained(result.best_model_dir).state_dict()
    moved = 0.0
    for name, value in expected.items():
        torch.testing.assert_close(exported[name], value, atol=1e-6, rtol=1e-5)
        if value.is_floating_point():
            moved = max(moved, float((value - snapshots[best][name]).abs().max()))
    assert moved > 1e-4, "average and raw weights coincide: the test would not tell them apart"
    checkpoint = next((tmp_path / "run" / "checkpoints").glob(f"checkpoint-{best}"))
    assert weights_folder(checkpoint, "eval_ema_map_50") == checkpoint / EMA_DIR
    assert weights_folder(checkpoint, "eval_map_50") == checkpoint

    # what was reported as eval_ema_* is the evaluation of those very weights
    data = check_run_inputs(config)
    again = evaluate_prepared(result.best_model_dir, config, data, "val")
    for name in ("iou_mean", "center_error_px", "recall", "precision", "map_50"):
        assert again[name] == pytest.approx(history[best][f"eval_ema_{name}"], abs=1e-6), name
    assert history[best]["eval_ema_iou_mean"] != pytest.approx(history[best]["eval_iou_mean"],
                                                                abs=1e-6)
