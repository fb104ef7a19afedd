"""Ranges stated relative to the checkpoint's recipe (search.space.relative_ranges):
`{loguniform: [0.25, 2.0], relative_to: recipe}` resolved to absolute values when the space file
is loaded, recorded in the spec, shown by `--dry-run`, and refused in one line where it cannot
be resolved. No Ray is started.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from search_helpers import SMALL_DATA

from detr_core.files.errors import UserInputError
from search.space.spec import SearchSpec, load_search_spec, to_tune_param_space

REPO = Path(__file__).resolve().parents[3]
IOU = REPO / "search_spaces" / "iou.yaml"
LR = "training_args.learning_rate"
RELATIVE_LR = {"loguniform": [0.25, 2.0], "relative_to": "recipe"}
RECIPE_KEYS = "training_args.learning_rate, backbone_lr_ratio, training_args.weight_decay, " \
              "training_args.max_grad_norm"


def iou_like(folder: Path, overrides: dict[str, Any] | None = None,
             space: dict[str, Any] | None = None) -> Path:
    """The shipped iou.yaml with `base_overrides` and `space` entries added (or replaced)."""
    doc = yaml.safe_load(IOU.read_text(encoding="utf-8"))
    if "model.preset" in (overrides or {}):  # a preset instead of iou.yaml's checkpoint
        doc["base_overrides"].pop("model.checkpoint")
    doc["base_overrides"].update(overrides or {})
    doc["space"].update(space or {})
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(UserInputError) as info:
        load_search_spec(path)
    text = str(info.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------------------------------------
# resolution


def test_shipped_iou_resolves_against_its_checkpoints_measured_recipe() -> None:
    spec = load_search_spec(IOU)
    assert spec.space[LR] == {"loguniform": [1e-3, 8e-3]}
    domain = to_tune_param_space(spec)[LR]
    assert (domain.lower, domain.upper) == (1e-3, 8e-3)
    assert spec.recipe["name"] == "builtin:tiny-shapes-d-fine"
    assert spec.recipe["source"].startswith("measured: ")
    assert spec.recipe["relative"] == {LR: {"factors": {"loguniform": [0.25, 2.0]},
                                            "recipe_value": 0.004,
                                            "resolved": {"loguniform": [1e-3, 8e-3]}}}
    assert spec.recipe["keys"] == {LR: "space (searched)", "backbone_lr_ratio": "recipe",
                                   "training_args.weight_decay": "recipe",
                                   "training_args.max_grad_norm": "run"}


@pytest.mark.parametrize(("name", "bounds"), [
    ("freeze.yaml", [5e-4, 4e-3]), ("full.yaml", [5e-4, 4e-3]), ("lr_warmup.yaml", [1e-4, 4e-3]),
])
def test_other_shipped_spaces_keep_their_absolute_ranges(name: str, bounds: list[float]) -> None:
    spec = load_search_spec(REPO / "search_spaces" / name)
    assert spec.space[LR] == {"loguniform": bounds}
    assert LR in spec.recipe["relative"]


def test_the_record_survives_search_spec_yaml() -> None:
    spec = load_search_spec(IOU)
    again = SearchSpec.from_yaml_dict(yaml.safe_load(yaml.safe_dump(spec.to_yaml_dict())),
                                      "search_spec.yaml")
    assert again.recipe == spec.recipe and again.space == spec.space


def test_an_rt_detr_checkpoint_gets_rt_detrs_published_learning_rate(
        tmp_path: Path, rt_detr_folder: Path) -> None:
    spec = load_search_spec(iou_like(tmp_path, {"model.checkpoint": str(rt_detr_folder)}))
    assert spec.space[LR] == {"loguniform": [2.5e-5, 2e-4]}  # 0.25-2 x 1e-4
    assert spec.recipe["name"] == "RT-DETR"
    assert spec.recipe["source"].startswith("lyuwenyu/RT-DETR")


def test_a_folder_with_its_own_recipe_uses_it(tmp_path: Path, rt_detr_folder: Path) -> None:
    folder = tmp_path / "own"
    shutil.copytree(rt_detr_folder, folder)
    (folder / "recipe.json").write_text(json.dumps(
        {"learning_rate": 0.01, "backbone_lr_ratio": 0.5, "weight_decay": 0.05,
         "max_grad_norm": 1.0, "source": "measured here"}), encoding="utf-8")
    space = {"training_args.weight_decay": {"choice": [0.5, 1, 2], "relative_to": "recipe"},
             "backbone_lr_ratio": {"uniform": [0.5, 2.0], "relative_to": "recipe"},
             "training_args.max_grad_norm": {"qloguniform": [0.1, 1.0, 0.1],
                                             "relative_to": "recipe"}}
    spec = load_search_spec(iou_like(tmp_path, {"model.checkpoint": str(folder)}, space))
    assert spec.space[LR] == {"loguniform": [0.0025, 0.02]}
    assert spec.space["training_args.weight_decay"] == {"choice": [0.025, 0.05, 0.1]}
    assert spec.space["backbone_lr_ratio"] == {"uniform": [0.25, 1.0]}
    assert spec.space["training_args.max_grad_norm"] == {"qloguniform": [0.1, 1.0, 0.1]}
    assert spec.recipe["name"] == str(folder) and spec.recipe["source"] == "measured here"


# ---------------------------------------------------------------------------------------------
# refused, one line naming the file and the key


@pytest.mark.parametrize(("space", "key", "words"), [
    ({"training_args.warmup_steps": {"uniform": [0.5, 1.0], "relative_to": "recipe"}},
     "training_args.warmup_steps", f"relative_to: recipe applies to {RECIPE_KEYS}"),
    ({LR: {"loguniform": [0.25, 2.0], "relative_to": "checkpoint"}},
     LR, "relative_to takes recipe (the checkpoint's fine-tuning recipe), got 'checkpoint'"),
    ({LR: {"relative_to": "recipe"}}, LR, "relative_to: recipe goes with a range or a choice"),
    ({LR: {"loguniform": [0.25, 2.0], "relative_to": "recipe", "step": 2}},
     LR, "a distribution is one key with its arguments"),
    ({LR: {"loguniform": [0.25, 2.0], "relative": "recipe"}},
     LR, "a distribution is one key with its arguments"),
    ({LR: {"randint": [1, 3], "relative_to": "recipe"}}, LR, "randint draws integers"),
    ({LR: {"choice": [1, "twice"], "relative_to": "recipe"}}, LR, "lists numbers"),
    ({"training_args.weight_decay": {"uniform": [0.5, 2.0], "relative_to": "recipe"}},
     "training_args.weight_decay", "the recipe of builtin:tiny-shapes-d-fine sets "
                                   "training_args.weight_decay to 0"),
    ({LR: {"uniform": [-1.0, 2.0], "relative_to": "recipe"}}, LR, "value -0.004 is not valid"),
])
def test_what_cannot_be_resolved_is_refused(tmp_path: Path, space: dict, key: str,
                                            words: str) -> None:
    path = iou_like(tmp_path, space=space)
    text = refused(path)
    assert text.startswith(f"{path}: space.{key}: ") and words in text, text


def test_a_model_without_a_recipe_is_refused_naming_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from detr_core.model import recipes

    monkeypatch.delitem(recipes.PUBLISHED, "detr")
    path = iou_like(tmp_path, {"model.preset": "tiny"})
    text = refused(path)
    assert text.startswith(f"{path}: space.{LR}: relative_to: recipe: the base model (preset "
                           "tiny, family detr) has no recipe"), text


def test_a_checkpoint_not_on_this_machine_is_refused_naming_it(tmp_path: Path) -> None:
    path = iou_like(tmp_path, {"model.checkpoint": "nobody/no-such-detr"})
    text = refused(path)
    assert text.startswith(f"{path}: space.{LR}: relative_to: recipe: ") and \
        "nobody/no-such-detr" in text, text


# ---------------------------------------------------------------------------------------------
# --dry-run


def test_dry_run_prints_the_resolved_range_and_where_each_recipe_value_comes_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from search.run import main

    path = iou_like(tmp_path, {"data.synthetic": dict(SMALL_DATA),
                               "training_args.weight_decay": 0.01})
    storage = tmp_path / "results"
    assert main(["--space", str(path), "--storage", str(storage), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (f"  {LR}  loguniform [0.001, 0.008] (log scale), 0.25-2 x the recipe's 0.004"
            in lines), lines
    head = next(i for i, line in enumerate(lines) if line.startswith("Recipe: "))
    assert lines[head].startswith("Recipe: builtin:tiny-shapes-d-fine (measured: ")
    assert [" ".join(line.split()) for line in lines[head + 1:head + 5]] == [
        f"{LR} space (searched): 0.25-2 x the recipe's 0.004",
        "backbone_lr_ratio recipe: 1",
        "training_args.weight_decay space (base_overrides): 0.01",
        "training_args.max_grad_norm run: 0.1",
    ]
    assert not storage.exists()
