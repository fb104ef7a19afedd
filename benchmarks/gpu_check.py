"""Training throughput and peak memory on a GPU, for a lent accelerator (never in CI).

    python benchmarks/gpu_check.py all OUT            # the whole matrix, OUT/gpu_check.md
    python benchmarks/gpu_check.py all OUT --device cpu --smoke   # the same code, seconds

Two models, random weights (nothing downloaded): the DETR-R50 layout (ResNet-50, 6 + 6
transformer layers, 100 queries, 41.5 M parameters) at 800 px and batch 2 (the per-GPU batch of
facebookresearch/detr's recipe), and the embedded default's tiny DETR at 96 px and batch 8.
Each is trained with AdamW on images with two boxes each, through the project's loss
(`use_iou_loss`), for a fixed time after warm-up steps:

- fp32 and bf16 (autocast): optimizer steps/s and peak memory (`torch.cuda.max_memory_allocated`);
- 2 and 4 processes on the same device at once (bf16), as Ray packs trials with
  `gpus_per_trial: 0.5 / 0.25`: steps/s of each and all together against one alone, and the
  peak of each;
- with two devices or more, one 2-worker DDP job (bf16, NCCL; `workers_per_trial: 2`): each
  rank the recipe's batch on its own device, images/s of the job against one device alone.
About 3 minutes in all on an H100-class GPU (3.5 with the DDP rows).

A step here is the model's forward, loss, backward and update: the data pipeline and
evaluation are not in it (`gpu_check.sh train` times whole runs of the embedded default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODELS = {  # name -> (image size, batch)
    "detr-r50": (800, 2),
    "tiny": (96, 8),
}


def build(model: str) -> Any:
    """A DETR of `model`'s layout, random weights, the project's GIoU loss installed."""
    from transformers import AutoConfig, AutoModelForObjectDetection, ResNetConfig

    from detr_core.model.build import use_iou_loss
    from detr_core.model.families import tiny_config

    if model == "detr-r50":
        config = AutoConfig.for_model("detr", backbone_config=ResNetConfig(out_features=["stage4"]),
                                      use_timm_backbone=False, use_pretrained_backbone=False,
                                      num_labels=91)
    else:
        config = tiny_config("detr", num_labels=3)
    detector = AutoModelForObjectDetection.from_config(config)
    use_iou_loss(detector, "giou")
    return detector


def measure(model: str, dtype: str, device: str, seconds: float, warmup: int,
            size: int | None = None, rank: int = 0, world: int = 1,
            port: int = 0) -> dict[str, Any]:
    """Train `model` for `seconds` after `warmup` steps; steps/s and peak memory. With `world`
    > 1, as rank `rank` of a DDP job (NCCL on `cuda:<rank>`, gloo on a CPU)."""
    import os

    import torch

    torch.manual_seed(0)
    image_size, batch = MODELS[model]
    image_size = size or image_size
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cuda_job = device.startswith("cuda")
        torch.distributed.init_process_group("nccl" if cuda_job else "gloo", rank=rank,
                                             world_size=world)
        device = f"cuda:{rank}" if cuda_job else device
        if cuda_job:
            torch.cuda.set_device(rank)
    detector = build(model).to(device).train()
    if world > 1:  # the Trainer's DDP wrapping (unused parameters looked for, as it does)
        detector = torch.nn.parallel.DistributedDataParallel(
            detector, device_ids=[rank] if device.startswith("cuda") else None,
            find_unused_parameters=True)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=1e-4)
    pixels = torch.randn(batch, 3, image_size, image_size, device=device)
    labels = [{"class_labels": torch.tensor([1, 2], device=device),
               "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4], [0.3, 0.6, 0.2, 0.2]],
                                     device=device)} for _ in range(batch)]
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=dtype == "bf16")

    def step() -> None:
        with autocast:
            loss = detector(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    steps, start = 0, time.perf_counter()

    def timed_out() -> bool:  # the ranks of a job stop together: each step is a collective
        over = steps > 0 and time.perf_counter() - start >= seconds
        if world == 1:
            return over
        flag = torch.tensor([float(over)], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    while not timed_out():
        step()
        steps += 1
        if steps % 5 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    if world > 1:
        torch.distributed.destroy_process_group()
    return {"model": model, "dtype": dtype, "device": device, "image_size": image_size,
            "batch": batch, "steps": steps, "seconds": round(elapsed, 3),
            "steps_per_s": steps / elapsed, "peak_gib": peak, "workers": world}


def packed(model: str, dtype: str, device: str, processes: int, seconds: float, warmup: int,
           size: int | None, ddp: bool = False) -> list[dict[str, Any]]:
    """`processes` measurements at once, each in its own interpreter: on one device, or (`ddp`)
    the ranks of one DDP job."""
    argv = [sys.executable, __file__, "one", model, dtype, "--device", device,
            "--seconds", str(seconds), "--warmup", str(warmup)]
    if size:
        argv += ["--size", str(size)]
    if ddp:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        argv += ["--world", str(processes), "--port", str(port)]
    procs = [subprocess.Popen([*argv, *(["--rank", str(rank)] if ddp else [])],
                              stdout=subprocess.PIPE, text=True)
             for rank in range(processes)]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{model} {dtype} x{processes}: exit {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def report(rows: list[dict[str, Any]], packs: dict[tuple[str, int], list[dict[str, Any]]],
           device_name: str, jobs: dict[str, list[dict[str, Any]]] | None = None,
           devices: int = 1) -> str:
    """The Markdown of one `all` run."""
    lines = [f"# Training throughput on {device_name}", "",
             "`python benchmarks/gpu_check.py all OUT` (random weights, fixed images, the "
             "project's GIoU loss; forward, loss, backward and AdamW update per step).", "",
             "| model | image px | batch | dtype | steps/s | images/s | peak GiB |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['image_size']} | {r['batch']} | {r['dtype']} | "
                     f"{r['steps_per_s']:.2f} | {r['steps_per_s'] * r['batch']:.1f} | "
                     f"{r['peak_gib']:.2f} |")
    by = {(r["model"], r["dtype"]): r["steps_per_s"] for r in rows}
    for model in MODELS:
        if (model, "fp32") in by and (model, "bf16") in by:
            lines.append(f"\n{model}: bf16 / fp32 steps/s = "
                         f"**{by[model, 'bf16'] / by[model, 'fp32']:.2f}**")
    lines += ["", "## Processes sharing one device (trials packed by Ray)", "",
              "| model | dtype | processes | steps/s each | steps/s together | x one alone | "
              "peak GiB each |", "| --- | --- | --- | --- | --- | --- | --- |"]
    alone = {(r["model"], 1): [r] for r in rows if r["dtype"] == "bf16"}  # the bf16 row
    for (model, count), runs in sorted({**alone, **packs}.items()):
        total = sum(r["steps_per_s"] for r in runs)
        each = ", ".join(f"{r['steps_per_s']:.2f}" for r in runs)
        lines.append(f"| {model} | {runs[0]['dtype']} | {count} | {each} | {total:.2f} | "
                     f"{total / alone[model, 1][0]['steps_per_s']:.2f} | "
                     f"{max(r['peak_gib'] for r in runs):.2f} |")
    lines += ["", "## One trial on 2 devices (a 2-worker DDP job, `workers_per_trial: 2`)", ""]
    if not jobs:
        lines.append(f"Not measured: {devices} device(s) here; the job needs two.")
        return "\n".join(lines) + "\n"
    lines += ["| model | dtype | batch a rank | steps/s | images/s | x one device alone | "
              "peak GiB a rank |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, ranks in jobs.items():
        steps = min(r["steps_per_s"] for r in ranks)  # a step waits for the slowest rank
        images = steps * ranks[0]["batch"] * len(ranks)
        one = alone[model, 1][0]
        lines.append(f"| {model} | {ranks[0]['dtype']} | {ranks[0]['batch']} | {steps:.2f} | "
                     f"{images:.1f} | {images / (one['steps_per_s'] * one['batch']):.2f} | "
                     f"{max(r['peak_gib'] for r in ranks):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("all", "one"))
    parser.add_argument("args", nargs="*", help="all: OUT; one: MODEL DTYPE")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--size", type=int, help="image size for every model (smoke runs)")
    parser.add_argument("--rank", type=int, default=0, help="one: this rank of a DDP job")
    parser.add_argument("--world", type=int, default=1, help="one: the job's ranks")
    parser.add_argument("--port", type=int, default=0, help="one: the job's rendezvous port")
    parser.add_argument("--smoke", action="store_true",
                        help="1 s a measurement, 64 px, 2 processes: checks the code")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.what == "one":
        model, dtype = args.args
        print(json.dumps(measure(model, dtype, args.device, args.seconds, args.warmup,
                                 args.size, args.rank, args.world, args.port)), flush=True)
        return 0
    (out,) = args.args
    import torch

    seconds, warmup, size = ((1.0, 1, 64) if args.smoke else
                             (args.seconds, args.warmup, args.size))
    counts = (2,) if args.smoke else (2, 4)  # one process alone: the bf16 row above
    device_name = (torch.cuda.get_device_name() if args.device.startswith("cuda")
                   else f"CPU ({args.device})")
    rows = [measure(model, dtype, args.device, seconds, warmup, size)
            for model in MODELS for dtype in ("fp32", "bf16")]
    packs = {(model, n): packed(model, "bf16", args.device, n, seconds, warmup, size)
             for model in MODELS for n in counts}
    cuda = args.device.startswith("cuda")
    devices = torch.cuda.device_count() if cuda else 2  # a CPU smoke runs the job on gloo
    jobs = {model: packed(model, "bf16", args.device, 2, seconds, warmup, size, ddp=True)
            for model in MODELS} if devices >= 2 else {}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "gpu_throughput.json").write_text(json.dumps(
        {"rows": rows, "packed": {f"{m} x{n}": r for (m, n), r in packs.items()},
         "data_parallel": jobs}, indent=1))
    text = report(rows, packs, device_name, jobs, devices)
    (Path(out) / "gpu_check.md").write_text(text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
