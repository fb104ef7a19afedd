"""detr_core.config.run_config / training_args / yaml_io: run YAML on disk -> validated
dataclasses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detr_core.config.run_config import (
    DEFAULT_CONFIG_PATH,
    RunConfig,
    load_default_run_config,
    load_run_config,
    run_config_from_dict,
    save_run_config,
)
from detr_core.config.training_args import build_training_args
from detr_core.files.errors import UserInputError
from detr_core.files.file_io import loads_yaml

REPO_ROOT = Path(__file__).resolve().parents[3]

MINIMAL = """\
model:
  preset: tiny
data:
  synthetic: {num_train: 8, num_val: 4, num_test: 0}
"""


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_embedded_default_loads() -> None:
    """The shipped YAML loads, fine-tunes the shipped checkpoint on the synthetic data, and
    every value in it survives."""
    cfg = load_default_run_config()
    assert isinstance(cfg, RunConfig)
    assert DEFAULT_CONFIG_PATH.is_file()
    assert cfg.model.preset is None
    assert cfg.model.checkpoint == "builtin:tiny-shapes"
    assert cfg.data.synthetic is not None
    assert cfg.data.train is None
    assert cfg.iou_loss == "giou"
    raw = loads_yaml(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    assert cfg.training_args == raw["training_args"]
    assert isinstance(cfg.training_args["learning_rate"], float)
    assert cfg.augmentation.train == raw["augmentation"]["train"]
    assert cfg.data.synthetic.num_train == raw["data"]["synthetic"]["num_train"]
    assert cfg.model.image_size == raw["model"]["image_size"]
    args = build_training_args(cfg.training_args, Path("/tmp/unused"), seed=cfg.seed)
    assert args.metric_for_best_model == "eval_loss_bbox"
    assert args.greater_is_better is False


def test_load_run_config_from_file(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "run.yaml", """\
        seed: 7
        iou_loss: ciou
        freeze_backbone: true
        num_threads: 1
        model: {preset: tiny, image_size: 128, config_overrides: {num_queries: 5}}
        data:
          synthetic: {num_train: 10, num_val: 2, num_test: 3, image_size: 48, seed: 3}
        training_args: {learning_rate: 1e-4, logging_steps: 5}
        evaluation: {score_threshold: 0.25}
        """)
    cfg = load_run_config(path)
    assert (cfg.seed, cfg.iou_loss, cfg.freeze_backbone, cfg.num_threads) == (7, "ciou", True, 1)
    assert cfg.model.image_size == 128
    assert cfg.model.config_overrides == {"num_queries": 5}
    syn = cfg.data.synthetic
    assert (syn.num_train, syn.num_val, syn.num_test, syn.image_size, syn.seed) == (10, 2, 3, 48, 3)
    assert cfg.evaluation.score_threshold == 0.25
    assert cfg.training_args["logging_steps"] == 5


@pytest.mark.parametrize("spelling", ["1e-4", "1E-4", "1.0e-4", "0.0001", ".0001"])
def test_learning_rate_spellings_are_floats(tmp_path: Path, spelling: str) -> None:
    """PyYAML (YAML 1.1) reads `1e-4` as a string; detr_core's loader must read a float."""
    path = write_yaml(tmp_path / "run.yaml",
                      MINIMAL + f"training_args: {{learning_rate: {spelling}}}\n")
    lr = load_run_config(path).training_args["learning_rate"]
    assert isinstance(lr, float)
    assert lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("snippet", "dotted"),
    [
        ("learningrate: 0.1\n", "learningrate"),
        ("model: {preset: tiny, imagesize: 64}\n", "model.imagesize"),
        ("data: {synthetic: {num_train: 8, colour: red}}\n", "data.synthetic.colour"),
        ("evaluation: {threshold: 0.3}\n", "evaluation.threshold"),
    ],
)
def test_unknown_key_names_dotted_key_and_file(tmp_path: Path, snippet: str, dotted: str) -> None:
    raw = "model: {preset: tiny}\ndata: {synthetic: {num_train: 8}}\n"
    if snippet.startswith(("model:", "data:")):  # replace that section instead of repeating it
        section = snippet.split(":")[0]
        raw = "".join(line + "\n" for line in raw.splitlines() if not line.startswith(section))
    path = write_yaml(tmp_path / "bad.yaml", raw + snippet)
    with pytest.raises(UserInputError) as info:
        load_run_config(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{dotted}: unknown key" in message


@pytest.mark.parametrize(
    ("line", "dotted", "problem"),
    [
        ('freeze_backbone: "yes"', "freeze_backbone", "expected true or false"),
        ("model: {preset: tiny, image_size: big}", "model.image_size", "expected an integer"),
        ("iou_loss: xiou", "iou_loss", "must be one of"),
        ("seed: 1.5", "seed", "expected an integer"),
        ("model: {preset: small}", "model.preset", "'tiny'"),
        ("evaluation: {score_threshold: high}", "evaluation.score_threshold",
         "expected a number"),
        ("augmentation: {train: HorizontalFlip}", "augmentation.train", "expected a list"),
    ],
)
def test_wrong_types_rejected(tmp_path: Path, line: str, dotted: str, problem: str) -> None:
    base = {"model": "model: {preset: tiny}", "data": "data: {synthetic: {num_train: 8}}"}
    section = line.split(":")[0]
    base.pop(section, None)
    path = write_yaml(tmp_path / "bad.yaml", "\n".join([*base.values(), line]) + "\n")
    with pytest.raises(UserInputError) as info:
        load_run_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {dotted}: ")
    assert problem in message
    assert "\n" not in message


def test_training_args_unknown_field(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bad.yaml", MINIMAL + "training_args: {learnin_rate: 0.1}\n")
    with pytest.raises(UserInputError) as info:
        load_run_config(path)
    assert str(info.value) == (f"{path}: training_args.learnin_rate: "
                               "not a transformers.TrainingArguments field")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("eval_strategy", "epoch", "evaluation runs at every logging step"),
        ("output_dir", "x", "--output-dir"),
        ("seed", 3, "top-level `seed:`"),
        ("remove_unused_columns", True, "labels"),
    ],
)
def test_training_args_owned_field(tmp_path: Path, field: str, value: object,
                                   reason: str) -> None:
    path = write_yaml(tmp_path / "bad.yaml", MINIMAL + f"training_args: {{{field}: {value}}}\n")
    with pytest.raises(UserInputError) as info:
        load_run_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: training_args.{field}: set by detr_core")
    assert reason in message


def test_training_args_wrong_value_type(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bad.yaml", MINIMAL + "training_args: {logging_steps: many}\n")
    with pytest.raises(UserInputError, match=r"training_args\.logging_steps: expected"):
        load_run_config(path)


def test_warmup_ratio_becomes_fractional_warmup_steps(tmp_path: Path) -> None:
    """transformers 5 dropped `warmup_ratio`; 0.1 must become `warmup_steps: 0.1` (a ratio)."""
    path = write_yaml(tmp_path / "run.yaml", MINIMAL + "training_args: {warmup_ratio: 0.1}\n")
    cfg = load_run_config(path)
    args = build_training_args(cfg.training_args, tmp_path / "out", seed=cfg.seed)
    assert args.warmup_steps == pytest.approx(0.1)
    assert args.get_warmup_steps(1000) == 100


def test_warmup_steps_integer_kept_as_steps(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "run.yaml", MINIMAL + "training_args: {warmup_steps: 200}\n")
    cfg = load_run_config(path)
    args = build_training_args(cfg.training_args, tmp_path / "out", seed=cfg.seed)
    assert args.warmup_steps == 200
    assert args.get_warmup_steps(1000) == 200


def test_warmup_ratio_and_steps_together_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "bad.yaml",
                      MINIMAL + "training_args: {warmup_ratio: 0.1, warmup_steps: 10}\n")
    with pytest.raises(UserInputError, match="not both"):
        load_run_config(path)


def test_owned_fields_are_set_by_detr_core(tmp_path: Path) -> None:
    """Evaluation and checkpointing follow logging_steps whatever the user wrote elsewhere."""
    path = write_yaml(tmp_path / "run.yaml", MINIMAL + "training_args: {logging_steps: 7}\n")
    cfg = load_run_config(path)
    args = build_training_args(cfg.training_args, tmp_path / "out", seed=5)
    assert args.eval_strategy.value == "steps"
    assert args.eval_steps == 7
    assert args.save_strategy.value == "best"
    assert args.save_total_limit == 1
    assert args.remove_unused_columns is False
    assert args.eval_do_concat_batches is False
    assert args.seed == 5
    assert args.output_dir == str(tmp_path / "out")
    assert args.metric_for_best_model == "eval_loss_bbox"
    assert args.greater_is_better is False


def test_save_load_round_trip(tmp_path: Path) -> None:
    for cfg in (load_default_run_config(), _coco_config(tmp_path)):
        target = tmp_path / "saved.yaml"
        save_run_config(cfg, target, header="written by a test\nsecond line")
        text = target.read_text()
        assert text.startswith("# written by a test\n# second line\n")
        assert load_run_config(target) == cfg


def _coco_config(tmp_path: Path) -> RunConfig:
    path = write_yaml(tmp_path / "coco.yaml", """\
        model: {checkpoint: facebook/detr-resnet-50, image_size: 320}
        iou_loss: diou
        data:
          train: {annotations: data/train.json, images: data/train}
          val: {annotations: data/val.json, images: data/val}
        training_args: {learning_rate: 5e-5, warmup_ratio: 0.05, report_to: [tensorboard]}
        augmentation: {train: [{RandomBrightnessContrast: {p: 0.3}}], min_area: 9}
        """)
    return load_run_config(path)


def test_relative_data_paths_resolved_against_yaml_folder(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "weights").mkdir()
    path = write_yaml(folder / "run.yaml", """\
        model: {checkpoint: weights}
        data:
          train: {annotations: ../data/train.json, images: ../data/train}
          val: {annotations: val.json, images: /abs/val}
          test: {annotations: ./t/test.json, images: t}
        """)
    monkeypatch.chdir(tmp_path.parent)  # the process's cwd must not matter
    cfg = load_run_config(path)
    assert cfg.data.train.annotations == str(tmp_path / "data" / "train.json")
    assert cfg.data.train.images == str(tmp_path / "data" / "train")
    assert cfg.data.val.annotations == str(folder / "val.json")
    assert cfg.data.val.images == "/abs/val"
    assert cfg.data.test.annotations == str(folder / "t" / "test.json")
    assert cfg.model.checkpoint == str(folder / "weights")  # an existing local folder
    # A Hub name that is not a local folder stays a Hub name.
    hub = write_yaml(folder / "hub.yaml", MINIMAL.replace("preset: tiny", "checkpoint: org/m"))
    assert load_run_config(hub).model.checkpoint == "org/m"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("model: {preset: tiny}\n", "data: give either"),
        ("model: {preset: tiny, checkpoint: x}\ndata: {synthetic: {}}\n", "model: give exactly"),
        ("model: {preset: tiny}\ndata: {synthetic: {image_size: 16}}\n",
         "data.synthetic.image_size: must be >= 32"),
        ("model: {preset: tiny}\ndata: {train: {annotations: a, images: b}}\n",
         "data.val: required"),
        ("model: {preset: tiny}\ndata: {synthetic: {min_objects: 3, max_objects: 2}}\n",
         "data.synthetic.max_objects"),
        ("model: {preset: tiny}\ndata: {train: {annotations: a}, val: {annotations: a, "
         "images: b}}\n", "data.train.images: required key is missing"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("model: [unclosed\n", "not valid YAML (line"),
    ],
)
def test_semantic_and_syntax_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(UserInputError) as info:
        load_run_config(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="file not found"):
        load_run_config(tmp_path / "nope.yaml")


def test_run_config_from_dict_names_source() -> None:
    with pytest.raises(UserInputError, match=r"^trial 3: model\.image_size: expected"):
        run_config_from_dict({"model": {"preset": "tiny", "image_size": "big"},
                              "data": {"synthetic": {}}}, source="trial 3")


def test_train_cli_bad_config_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI turns a config mistake into one stderr line, exit code 2, nothing written
    (in-process: `detr_core.train.main` is what the console script runs)."""
    from detr_core.train import main

    bad = write_yaml(tmp_path / "bad.yaml", """\
        model: {preset: tiny, imagesize: 64}
        data: {synthetic: {num_train: 8}}
        """)
    out = tmp_path / "out"
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["--config", str(bad), "--output-dir", str(out)])
    captured = capsys.readouterr()
    assert info.value.code == 2, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    assert lines[0].startswith("error: ")
    assert str(bad) in lines[0]
    assert "model.imagesize" in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_evaluate_cli_missing_model_is_user_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """In-process `main`: a wrong --model folder is one `error:` line and exit code 2."""
    from detr_core.evaluate import main

    config = write_yaml(tmp_path / "run.yaml", MINIMAL)
    with pytest.raises(SystemExit) as info:
        main(["--model", str(tmp_path / "nope"), "--config", str(config)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'nope'}: --model: model folder not found"]


def test_ema_section_defaults_and_ranges(tmp_path: Path) -> None:
    """`ema: {}` turns averaged weights on with the documented defaults; bad values name the key."""
    config = load_run_config(write_yaml(tmp_path / "ema.yaml", MINIMAL + "ema: {}\n"))
    assert config.ema is not None
    assert (config.ema.decay, config.ema.warmup_power) == (0.999, 0.75)
    assert load_run_config(write_yaml(tmp_path / "plain.yaml", MINIMAL)).ema is None
    for line, dotted in (("ema: {decay: 1.0}", "ema.decay"),
                         ("ema: {warmup_power: 0}", "ema.warmup_power")):
        path = write_yaml(tmp_path / "bad.yaml", MINIMAL + line + "\n")
        with pytest.raises(UserInputError, match=rf"^{path}: {dotted}: must be"):
            load_run_config(path)


def test_ema_metric_needs_averaged_weights(tmp_path: Path) -> None:
    """Choosing the best step by an `eval_ema_*` metric without `ema:` is refused up front."""
    text = MINIMAL + "training_args: {metric_for_best_model: eval_ema_map_50}\n"
    path = write_yaml(tmp_path / "bad.yaml", text)
    with pytest.raises(UserInputError,
                       match=rf"^{path}: training_args.metric_for_best_model: .*add `ema: {{}}`"):
        load_run_config(path)
    args = build_training_args(
        load_run_config(write_yaml(tmp_path / "ok.yaml", text + "ema: {}\n")).training_args,
        tmp_path / "out", seed=0)
    assert args.metric_for_best_model == "eval_ema_map_50"
    assert args.greater_is_better is True  # an ema_ metric keeps its base metric's direction


def test_an_unknown_best_model_metric_is_refused_when_the_file_is_read(tmp_path: Path) -> None:
    """Else the Trainer fails with a KeyError at the first evaluation, with a folder written."""
    path = write_yaml(tmp_path / "bad.yaml",
                      MINIMAL + "training_args: {metric_for_best_model: eval_mAP}\n")
    with pytest.raises(UserInputError, match=rf"^{path}: training_args.metric_for_best_model: "
                                             r"unknown metric 'eval_mAP'; one of: eval_loss, "):
        load_run_config(path)
    bare = write_yaml(tmp_path / "bare.yaml",
                      MINIMAL + "training_args: {metric_for_best_model: map_50}\n")
    assert load_run_config(bare).training_args["metric_for_best_model"] == "map_50"


@pytest.mark.parametrize(("value", "expected"), [
    ("wandb", "'wandb' is not installed here (pip install wandb), or leave it out"),
    ("[tensorboard, comet_ml]", "'comet_ml' is not installed here (pip install comet-ml)"),
    ("weights_and_biases", "unknown integration 'weights_and_biases'; one of: azure_ml, "),
])
def test_a_report_to_integration_must_be_installed(tmp_path: Path, value: str, expected: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing logger fails the Trainer's construction, after the run's folder was made."""
    from transformers.integrations import integration_utils

    # what transformers finds installed, as on a machine with no logger but TensorBoard
    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations",
                        lambda: ["tensorboard"])
    path = write_yaml(tmp_path / "bad.yaml", MINIMAL + f"training_args: {{report_to: {value}}}\n")
    with pytest.raises(UserInputError) as info:
        load_run_config(path)
    assert str(info.value).startswith(f"{path}: training_args.report_to: {expected}")


def test_an_image_size_no_machine_can_train_at_is_refused(tmp_path: Path) -> None:
    """100000 px tried to allocate 26 GB at the first step, after the run folder was made."""
    path = write_yaml(tmp_path / "big.yaml",
                      MINIMAL.replace("preset: tiny", "preset: tiny\n  image_size: 100000"))
    with pytest.raises(UserInputError, match=rf"^{path}: model.image_size: must be <= 8192, "
                                             r"got 100000$"):
        load_run_config(path)
    ok = write_yaml(tmp_path / "ok.yaml",
                    MINIMAL.replace("preset: tiny", "preset: tiny\n  image_size: 8192"))
    assert load_run_config(ok).model.image_size == 8192
