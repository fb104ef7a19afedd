"""`experiment.searcher.sampler` / `sampler_options`: read from a space file, checked in one
line, and the sampler the searcher proposes with (no Ray cluster: Tune's searcher API used as
plain objects)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pytest

from detr_core.files.errors import UserInputError
from search.running.cli import describe, parse_args, spec_overrides
from search.running.driver import build_searcher
from search.space.spec import SearchSpec, load_search_spec
from search.store.storage import location

SPACE = """\
experiment:
  name: samplers
  num_samples: 6
  searcher:
    seed: 3
    n_startup_trials: 2
{searcher}
space:
  iou_loss: {{choice: [giou, diou, ciou]}}
  training_args.learning_rate: {{loguniform: [1.0e-5, 1.0e-3]}}
"""


def _spec(tmp_path: Path, searcher: str, overrides: dict | None = None) -> SearchSpec:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(searcher=textwrap.indent(searcher, "    ")))
    return load_search_spec(path, overrides or {})


def _first_proposals(spec: SearchSpec, folder: Path, n: int = 3) -> list[dict]:
    search_alg, _ = build_searcher(spec, location(folder), max_concurrent=n)
    search_alg.set_search_properties(spec.metric, spec.mode, _tune_space(spec))
    return [search_alg.suggest(f"t{i}") for i in range(n)]


def _tune_space(spec: SearchSpec) -> dict:
    from search.space.spec import to_tune_param_space

    return to_tune_param_space(spec)


def test_tpe_is_the_default_and_the_plan_names_the_sampler(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "")
    assert (spec.searcher.sampler, spec.searcher.sampler_options) == ("tpe", {})
    spec = _spec(tmp_path, "sampler: tpe\nsampler_options: {multivariate: true, "
                           "constant_liar: true}")
    assert spec.searcher.sampler_options == {"multivariate": True, "constant_liar": True}
    plan = describe(spec)
    assert "searcher    Optuna TPE (multivariate=True, constant_liar=True), seed 3" in plan
    again = SearchSpec.from_yaml_dict(spec.to_yaml_dict(), "search_spec.yaml")
    assert (again.searcher.sampler, again.searcher.sampler_options) == (
        "tpe", {"multivariate": True, "constant_liar": True})


@pytest.mark.parametrize("name", ["random", "qmc", "gp"])
def test_the_named_sampler_makes_the_proposals(tmp_path: Path, name: str) -> None:
    """The searcher's first draws are those of that Optuna sampler with the searcher's seed
    (on the same distributions), not TPE's."""
    spec = _spec(tmp_path, f"sampler: {name}")
    ours = _first_proposals(spec, tmp_path / "ours")
    reference_sampler = {"random": optuna.samplers.RandomSampler(seed=3),
                         "qmc": optuna.samplers.QMCSampler(seed=3),
                         "gp": optuna.samplers.GPSampler(seed=3, n_startup_trials=2)}[name]
    study = optuna.create_study(sampler=reference_sampler, direction="maximize")
    distributions = {
        "iou_loss": optuna.distributions.CategoricalDistribution(["giou", "diou", "ciou"]),
        "training_args.learning_rate": optuna.distributions.FloatDistribution(
            1e-5, 1e-3, log=True),
    }
    expected = [study.ask(distributions).params for _ in range(3)]
    assert [{k: p[k] for k in distributions} for p in ours] == expected
    if name == "qmc":  # TPE, GP and random all start with the same seeded random draws
        assert _first_proposals(_spec(tmp_path, "sampler: tpe"), tmp_path / "tpe") != ours


def test_the_cli_flag_overrides_the_file(tmp_path: Path) -> None:
    args = parse_args(["--space", "x.yaml", "--sampler", "random"])
    spec = _spec(tmp_path, "sampler: gp", spec_overrides(args))
    assert spec.searcher.sampler == "random"
    with pytest.raises(SystemExit) as info:
        parse_args(["--space", "x.yaml", "--sampler", "bayes"])
    assert info.value.code == 2


@pytest.mark.parametrize(("searcher", "key", "says"), [
    ("sampler: bayes", "experiment.searcher.sampler",
     "unknown sampler str 'bayes' (known: tpe, gp"),
    ("sampler: random\nsampler_options: {multivariate: true}",
     "experiment.searcher.sampler_options.multivariate", "not an option of random"),
    ("sampler_options: {gama: 0.5}", "experiment.searcher.sampler_options.gama",
     "not an option of tpe (TPESampler takes: consider_prior"),
    ("sampler_options: {seed: 1}", "experiment.searcher.sampler_options.seed",
     "set it as experiment.searcher.seed"),
    ("sampler_options: {gamma: 0.5}", "experiment.searcher.sampler_options.gamma",
     "not an option of tpe"),
    ("sampler_options: [multivariate]", "experiment.searcher.sampler_options",
     "expected a mapping, got list"),
    ("sampler_options: {multivariate: 'yes'}",
     "experiment.searcher.sampler_options.multivariate", "expected true or false, got str"),
    ("sampler_options: {n_ei_candidates: 2.5}",
     "experiment.searcher.sampler_options.n_ei_candidates", "expected an integer, got float"),
    ("sampler: qmc\nsampler_options: {qmc_type: bogus}", "experiment.searcher.sampler_options",
     "QMCSampler refused the options: The `qmc_type='bogus'` is invalid"),
])
def test_a_bad_sampler_setting_is_one_line_naming_the_key(tmp_path: Path, searcher: str,
                                                         key: str, says: str) -> None:
    with pytest.raises(UserInputError) as info:
        _spec(tmp_path, searcher)
    message = str(info.value)
    assert key in message and says in message, message
    assert "\n" not in message
