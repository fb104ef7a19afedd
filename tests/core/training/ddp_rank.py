"""One rank of a data-parallel job on gloo, for `test_core_distributed.py` (a script: each rank
is its own process, as under Ray Train or torchrun).

    python ddp_rank.py MODE RANK WORLD RENDEZVOUS RUN_JSON OUT_JSON

WORLD 1 runs without a process group: the single-process reference; the ranks of a job meet at
the file RENDEZVOUS (no port to race for). MODE `curve`: OUT_JSON gets
`train_run`'s evaluation history on RUN_JSON. MODE `checks`: OUT_JSON gets
- `loss`: a tiny RT-DETR's loss terms (eval mode: no denoising noise) on this rank's share of
  one fixed batch of 4 images with 1, 1, 3 and 4 boxes, and the rank's box count;
- `batch_norm`: what `settle_batch_norm` said, and whether a training forward moved the encoder's
  running statistics;
- `evaluation`: the metrics of the first evaluation of `train_run` on RUN_JSON (learning rate
  1e-12: the same weights, to float precision, on every rank and in the reference; the global
  evaluation batch the same), and whether this rank kept a best model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def loss_terms(rank: int, world: int) -> dict:
    from detr_core.config.run_config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(preset="tiny", family="rt_detr"),
                        LabelMap(category_ids=(0, 1), names=("a", "b")), "giou", False).eval()
    generator = torch.Generator().manual_seed(1)
    pixels = torch.rand(4, 3, 64, 64, generator=generator)
    labels = []
    for count in (1, 1, 3, 4):
        centres = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator) * 0.2 + 0.1
        labels.append({"class_labels": torch.randint(0, 2, (count,), generator=generator),
                       "boxes": torch.cat([centres, sizes], 1)})
    share = slice(None) if world == 1 else slice(2 * rank, 2 * rank + 2)
    with torch.no_grad():
        outputs = model(pixel_values=pixels[share], labels=labels[share])
    return {"terms": {k: float(v) for k, v in outputs.loss_dict.items()},
            "boxes": sum(len(t["class_labels"]) for t in labels[share])}


def batch_norm() -> dict:
    from detr_core.config.run_config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_model
    from detr_core.training.distributed import settle_batch_norm

    model = build_model(ModelConfig(preset="tiny", family="rt_detr"),
                        LabelMap(category_ids=(0, 1), names=("a", "b")), "giou", True)
    said = settle_batch_norm(model, on_gpu=False)
    layer = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = layer.running_mean.clone()
    model.train()
    model(pixel_values=torch.rand(2, 3, 64, 64))
    return {"said": said, "moved": not torch.equal(before, layer.running_mean)}


def evaluation(run: dict, folder: Path, world: int) -> dict:
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    events = []

    class Listener:
        def on_evaluation(self, event) -> None:
            events.append(event.metrics)

    if world == 1:  # the global batch of the ranks' batches
        run["training_args"]["per_device_eval_batch_size"] *= 2
    result = train_run(run_config_from_dict(run), folder, listeners=[Listener()],
                       evaluate_test=False)
    return {"metrics": events[0], "best_model": result.best_model_dir is not None}


def curve(run: dict, folder: Path) -> list[dict]:
    from detr_core.config.run_config import run_config_from_dict
    from detr_core.train import train_run

    return train_run(run_config_from_dict(run), folder, evaluate_test=False).history


def main() -> None:
    mode = sys.argv[1]
    rank, world, rendezvous = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    run, out = json.loads(Path(sys.argv[5]).read_text()), Path(sys.argv[6])
    if world > 1:
        # accelerate reads these though the group exists (it then joins it, not a new one)
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
        torch.distributed.init_process_group("gloo", init_method=f"file://{rendezvous}",
                                             rank=rank, world_size=world)
    torch.set_num_threads(1)
    folder = out.parent / f"{out.stem}-run"
    if mode == "curve":
        report = {"history": curve(run, folder)}
    else:
        report = {"loss": loss_terms(rank, world), "batch_norm": batch_norm(),
                  "evaluation": evaluation(run, folder, world)}
    out.write_text(json.dumps(report))
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
