"""Does `--warm-start` pay off? A second, narrowed search with and without the first one's trials.

    python benchmarks/warm_start.py            # -> results/benchmarks/warm_start.{json,md}

On the replayed learning curves (`benchmarks/replay.py`: the recorded grid through the real
Ray Tune stack, simulated clock), per searcher seed:

1. the first search: the shipped settings (`settings_from`) over the benchmark space of
   `benchmarks/search_efficiency.yaml`, `num_samples` trials, Tune's JSON results kept in an
   experiment folder with its `search_spec.yaml`, as `search/run.py` leaves it;
2. the second search over a narrowed space (`second_space` in benchmarks/warm_start.yaml, fixed
   before any run), twice with the same sampler seed: cold, and warm-started from the first
   through the product's own code (`search.lineage.plan_warm_start` on that folder, the study
   seeded by `AshaAwareOptunaSearch(warm_start=...)`).

Measured per second search: the new trials it trained until one of them reached the first
search's best value of the objective (validation; `num_samples + 1` when none did), its best
value after all its trials, and the test mAP@.5 of what it would export (its winner's grid
point at the winner's best step, mean over the curve seeds it did not search on). The report
gives the median over seeds and the count of seeds where the warm start needed fewer trials.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import search_efficiency  # noqa: E402  (benchmarks/ is this script's folder)

from benchmarks.replay import (  # noqa: E402
    CurveTable,
    read_meta,
    replay_log,
    replay_trial,
    simulated_clock,
)

CONFIG = ROOT / "benchmarks" / "warm_start.yaml"
OUT = ROOT / "results" / "benchmarks"


def settings(config: dict[str, Any], space: dict[str, Any], name: str) -> Any:
    """The shipped settings (`search_efficiency.load_settings`) over `space`, named `name`."""
    import dataclasses

    from detr_core.files.file_io import dump_yaml

    bench = dict(config, space=space)
    bench["settings_from"] = str((CONFIG.parent / config["settings_from"]).resolve())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.yaml"
        dump_yaml(bench, path)
        spec, _ = search_efficiency.load_settings(path)
    return dataclasses.replace(spec, name=name)


def replay(spec: Any, table: CurveTable, seed: int, curve_seed: int, num_samples: int,
           folder: Path, warm_start: Any = None) -> list[Any]:
    """One replayed search of `spec` into `folder/<spec.name>`; its reports in order."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from search.space.spec import to_tune_param_space, write_spec_file
    from search.store.storage import location
    from search.store.study_journal import journal_storage
    from search.trial.searcher import AshaAwareOptunaSearch

    experiment = folder / spec.name
    experiment.mkdir(parents=True)
    write_spec_file(spec, location(experiment))
    searched = spec.searched_keys()
    searcher = AshaAwareOptunaSearch(
        sampler=optuna.samplers.TPESampler(seed=seed,
                                           n_startup_trials=spec.searcher.n_startup_trials),
        study_name=spec.name, storage=journal_storage(location(experiment)),
        max_t=spec.scheduler.max_t,
        warm_start=[t.optuna_trial(spec.metric, searched)
                    for t in (warm_start.trials if warm_start else [])])
    concurrency = spec.max_concurrent or 2
    clock = simulated_clock(concurrency, num_samples)
    log = replay_log(spec.metric, clock)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(
            replay_trial, table=table, seed=curve_seed, clock=clock,
            every=search_efficiency.evaluation_every(spec)), {"cpu": 1}),
        param_space=to_tune_param_space(spec),
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, num_samples=num_samples,
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
            scheduler=ASHAScheduler(time_attr="step", max_t=spec.scheduler.max_t,
                                    grace_period=spec.scheduler.grace_period,
                                    reduction_factor=spec.scheduler.reduction_factor),
            reuse_actors=True),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(folder), verbose=0,
                                  callbacks=[log]))
    tuner.fit()
    return log.reports


def best_report(reports: Sequence[Any], mode: str) -> Any:
    from detr_core.config.metric_names import is_better

    best = None
    for report in reports:
        if report.value is not None and (best is None or is_better(report.value, best.value,
                                                                    mode)):
            best = report
    return best


def trials_to_reach(reports: Sequence[Any], target: float, mode: str,
                    num_samples: int) -> int:
    """New trials (in the order they started) until one reported `target` or better."""
    from detr_core.config.metric_names import is_better

    order: list[str] = []
    for report in reports:
        if report.trial_id not in order:
            order.append(report.trial_id)
        if report.value is not None and not is_better(target, report.value, mode):
            return order.index(report.trial_id) + 1
    return num_samples + 1


def run(config: dict[str, Any], table: CurveTable, seeds: Sequence[int]) -> list[dict]:
    import ray

    from search.lineage.warm_start import plan_warm_start
    from search.running.driver import quiet_libraries

    quiet_libraries(verbose=0)
    first_spec = settings(config, config["first_space"], "first")
    second_spec = settings(config, config["second_space"], "second")
    n = int(config["num_samples"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    rows = []
    try:
        for seed in seeds:
            curve_seed = table.seeds[seed % len(table.seeds)]
            others = [s for s in table.seeds if s != curve_seed]
            with tempfile.TemporaryDirectory(prefix="warm-") as tmp:
                folder = Path(tmp)
                first = replay(first_spec, table, seed, curve_seed, n, folder)
                target = best_report(first, first_spec.mode)
                plan = plan_warm_start(second_spec, [str(folder / "first")])
                row: dict[str, Any] = {"seed": seed, "curve_seed": curve_seed,
                                       "first_best": target.value,
                                       "taken": len(plan.trials),
                                       "left_out": sum(sum(s.left_out.values())
                                                       for s in plan.sources)}
                for kind, warm in (("cold", None), ("warm", plan)):
                    reports = replay(second_spec, table, seed, curve_seed, n,
                                     folder / kind, warm)
                    best = best_report(reports, second_spec.mode)
                    # the winner: a warm-start trial may win
                    top = best_report(reports + (first_in_space(first, plan)
                                                 if kind == "warm" else []), second_spec.mode)
                    row[kind] = {
                        "trials_to_first_best": trials_to_reach(reports, target.value,
                                                                second_spec.mode, n),
                        "best_new_trial": best.value if best else None,
                        "best_overall": top.value,
                        "winner_test_map_50": search_efficiency.quality(
                            table, top.grid_point, top.step, others, second_spec.metric),
                    }
                rows.append(row)
                print(f"seed {seed}: first best {target.value:.4f}; trials to reach it: "
                      f"cold {row['cold']['trials_to_first_best']}, warm "
                      f"{row['warm']['trials_to_first_best']} ({row['taken']} warm-start "
                      f"trials, {row['left_out']} left out)", flush=True)
    finally:
        ray.shutdown()
    return rows


def first_in_space(reports: Sequence[Any], plan: Any) -> list[Any]:
    """The first search's reports of the trials the warm start took."""
    taken = {t.trial_id for t in plan.trials}
    return [r for r in reports if r.trial_id in taken]


def summarise(rows: Sequence[dict], num_samples: int) -> dict[str, Any]:
    def median(kind: str, key: str) -> float:
        return statistics.median(r[kind][key] for r in rows)

    fewer = sum(r["warm"]["trials_to_first_best"] < r["cold"]["trials_to_first_best"]
                for r in rows)
    same = sum(r["warm"]["trials_to_first_best"] == r["cold"]["trials_to_first_best"]
               for r in rows)
    return {
        "seeds": len(rows),
        "median_trials_to_first_best": {k: median(k, "trials_to_first_best")
                                        for k in ("cold", "warm")},
        "median_winner_test_map_50": {k: median(k, "winner_test_map_50")
                                      for k in ("cold", "warm")},
        "warm_fewer_trials": fewer, "same_trials": same,
        "not_reached": {k: sum(r[k]["trials_to_first_best"] > num_samples for r in rows)
                        for k in ("cold", "warm")},
        "median_taken": statistics.median(r["taken"] for r in rows),
    }


def render(config: dict[str, Any], rows: Sequence[dict], summary: dict[str, Any],
           meta: dict[str, Any], argv: Sequence[str]) -> str:
    n = config["num_samples"]
    med = summary["median_trials_to_first_best"]
    lines = [
        "# Warm start: a narrowed second search, with and without the first one's trials",
        "",
        f"`python benchmarks/{Path(__file__).name} {' '.join(argv)}`".rstrip() + ": replayed "
        f"learning curves (`{config['curves']}`, commit {meta.get('commit', '?')[:8]}), the "
        f"shipped settings (`{config['settings_from']}`: metric, ASHA, startup trials, "
        f"concurrency), {n} trials per search, searcher seeds {rows[0]['seed']}-"
        f"{rows[-1]['seed']}. First search over `first_space`, then the second over "
        "`second_space` (benchmarks/warm_start.yaml, fixed before the run) cold and with "
        "`--warm-start` from the first (the product's own `plan_warm_start` on the first "
        "search's folder). 'Trials to the first's best': new trials of the second search until "
        f"one reached the first search's best value of the objective ({n + 1} = not within "
        f"{n}). Test mAP@.5: the second search's winner (a warm-start trial may win), at its "
        "best step, mean over the curve seeds it did not search on.",
        "",
        f"**Median trials to the first's best: cold {med['cold']:g}, warm {med['warm']:g}**; "
        f"the warm start needed fewer on {summary['warm_fewer_trials']} of {summary['seeds']} "
        f"seeds, as many on {summary['same_trials']}; not reached within {n}: cold "
        f"{summary['not_reached']['cold']}, warm {summary['not_reached']['warm']}. Median "
        f"winner test mAP@.5: cold {summary['median_winner_test_map_50']['cold']:.3f}, warm "
        f"{summary['median_winner_test_map_50']['warm']:.3f}. Median warm-start trials taken: "
        f"{summary['median_taken']:g} of {n}.",
        "",
        "| seed | first best | taken / left out | cold: trials to it | warm: trials to it | "
        "cold: winner test mAP@.5 | warm: winner test mAP@.5 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['first_best']:.4f} | {r['taken']} / {r['left_out']} | "
            f"{r['cold']['trials_to_first_best']} | {r['warm']['trials_to_first_best']} | "
            f"{r['cold']['winner_test_map_50']:.3f} | {r['warm']['winner_test_map_50']:.3f} |")
    lines += ["", "Spaces:", "", "```yaml",
              json.dumps({"first_space": config["first_space"],
                          "second_space": config["second_space"]}, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from detr_core.files.file_io import load_yaml_mapping

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--seeds", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"),
                        help="searcher seeds FIRST..LAST (default: the config's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    config = load_yaml_mapping(args.config)
    curves = (args.config.parent / config["curves"]).resolve()
    table = CurveTable.from_jsonl(curves)
    meta = read_meta(curves)
    first, last = args.seeds or config["seeds"]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    rows = run(config, table, range(first, last + 1))
    summary = summarise(rows, int(config["num_samples"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "warm_start.json").write_text(json.dumps(
        {"summary": summary, "rows": rows, "config": config}, indent=1) + "\n")
    shown = list(argv) if argv is not None else sys.argv[1:]
    (args.out / "warm_start.md").write_text(render(config, rows, summary, meta, shown))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
