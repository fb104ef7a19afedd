"""A corpus of bad inputs, written as a new user would get them wrong, through the real CLIs.

Every case builds real files under `tmp_path` (YAML and JSON parsed from disk, images PIL must
read, model folders `from_pretrained` would load) and calls a CLI's `main` in-process (a
subprocess proves nothing more for a failure that happens before anything starts; the CLIs'
subprocess behaviour is covered by the end-to-end tests). Each case asserts the promise:
exit code 2, exactly one line on stderr (`error: ...`) that names the culprit (file, key,
record), no traceback, and an output folder that was never created (or, for `evaluate`, a
model folder that gained no file). Search cases also assert that Ray never started.

Families (>= 5 cases each): space YAML, run YAML, COCO JSON, images, model folders, CLI flags.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_RUN, CocoWriter, write_image

# ---------------------------------------------------------------------------------------------
# the harness


@dataclass
class Case:
    """One bad input: `build(tmp_path, env)` writes files and returns the CLI's argv; the one
    error line must contain every string `culprit(tmp_path)` returns."""

    family: str
    name: str
    cli: str  # train | evaluate | search | export
    build: Callable[[Path, dict[str, Any]], list[str]]
    culprit: Callable[[Path], list[str]]
    extra: dict[str, Any] = field(default_factory=dict)


def _main(cli: str) -> Callable[[list[str]], Any]:
    if cli == "train":
        from detr_core.train import main
    elif cli == "evaluate":
        from detr_core.evaluate import main
    elif cli == "search":
        from search.run import main
    else:
        from search.export import main
    return main


def out_dir(tmp: Path) -> Path:
    """Where every case points the CLI's output (`--output-dir`, `--storage`)."""
    return tmp / "out"


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def tiny_run(**changes: Any) -> dict[str, Any]:
    """TINY_RUN with dotted-key changes (`training_args.learning_rate=0` as a dict)."""
    raw = copy.deepcopy(TINY_RUN)
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def train_argv(config: Path, tmp: Path) -> list[str]:
    return ["--config", str(config), "--output-dir", str(out_dir(tmp))]


def search_argv(space: Path, tmp: Path, *extra: str) -> list[str]:
    return ["--space", str(space), "--storage", str(out_dir(tmp)), "--no-dashboard", *extra]


def space_doc(space: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A small valid search-space document (tiny model, tiny synthetic data)."""
    base = tiny_run()
    base.pop("num_threads")
    return {
        "experiment": {"name": "bad", "num_samples": 2, "scheduler": {"max_t": 6}},
        "base": base,
        **({"base_overrides": overrides} if overrides else {}),
        "space": space or {"training_args.learning_rate": {"loguniform": [1.0e-4, 1.0e-3]}},
    }


# ---------------------------------------------------------------------------------------------
# space YAML


def _space_file(tmp: Path, doc: dict[str, Any]) -> Path:
    return write_yaml(tmp / "space.yaml", doc)


def _space_case(name: str, doc: Callable[[], dict[str, Any]], key: str,
                *words: str, dry_run: bool = False) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        return search_argv(_space_file(tmp, doc()), tmp, *(["--dry-run"] if dry_run else []))

    return Case("space YAML", name, "search", build,
                lambda tmp: [f"{tmp / 'space.yaml'}: {key}: ", *words])


def _raw_space(name: str, content: bytes, *words: str) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        (tmp / "space.yaml").write_bytes(content)
        return search_argv(tmp / "space.yaml", tmp)

    return Case("space YAML", name, "search", build,
                lambda tmp: [str(tmp / "space.yaml"), *words])


VALID_SPACE_TEXT = yaml.safe_dump(space_doc(), sort_keys=False)

SPACE_CASES = [
    _raw_space("gzip file", gzip.compress(VALID_SPACE_TEXT.encode()), "gzip-compressed"),
    _raw_space("cp1252 comment", ("# réglages de l'été\n" + VALID_SPACE_TEXT).encode("cp1252"),
               "not UTF-8 text: byte 0xe9 at line 1, column 4", "Windows-1252"),
    _raw_space("utf-16 file", VALID_SPACE_TEXT.encode("utf-16"), "UTF-16"),
    _raw_space("duplicate searched key turns a range into a fixed value",
               (VALID_SPACE_TEXT + "  training_args.learning_rate: 0.001\n").encode(),
               "duplicate key 'training_args.learning_rate'"),
    _raw_space("duplicate experiment key",
               VALID_SPACE_TEXT.replace("name: bad", "name: bad\n  name: other").encode(),
               "duplicate key 'name'"),
    _raw_space("not YAML", b"space:\n  a: [1, 2\n", "not valid YAML (line"),
    _raw_space("binary junk", b"\x00\x01\x02space", "binary file"),
    Case("space YAML", "--space is a folder", "search",
         lambda tmp, env: (tmp / "spaces").mkdir() or search_argv(tmp / "spaces", tmp),
         lambda tmp: [f"{tmp / 'spaces'}: is a folder, not a file"]),
    _space_case("fixed learning rate 0 (dry run)",
                lambda: space_doc({"training_args.learning_rate": 0.0,
                                   "iou_loss": {"choice": ["giou", "diou"]}}),
                "space.training_args.learning_rate", "must be > 0", dry_run=True),
    _space_case("learning-rate range from 0",
                lambda: space_doc({"training_args.learning_rate": {"uniform": [0.0, 1.0e-3]}}),
                "space.training_args.learning_rate", "value 0.0", "must be > 0"),
    _space_case("batch size choice with 0",
                lambda: space_doc({"training_args.per_device_train_batch_size":
                                   {"choice": [0, 8]}}),
                "space.training_args.per_device_train_batch_size", "must be >= 1"),
    _space_case("zero epochs (dry run)",
                lambda: space_doc({"training_args.num_train_epochs": 0,
                                   "training_args.max_steps": -1,
                                   "iou_loss": {"choice": ["giou", "diou"]}}),
                "space.training_args.num_train_epochs", "must be > 0", dry_run=True),
    _space_case("negative warmup bound",
                lambda: space_doc({"training_args.warmup_steps": {"uniform": [-0.1, 0.1]}}),
                "space.training_args.warmup_steps", "must be >= 0"),
    _space_case("logging steps from 0",
                lambda: space_doc({"training_args.logging_steps": {"randint": [0, 4]}}),
                "space.training_args.logging_steps", "must be > 0"),
    _space_case("missing checkpoint among the choices",
                lambda: space_doc({"model.checkpoint": {"choice": ["./no-such-model",
                                                                   "./also-missing"]}}),
                "space.model.checkpoint", "local model folder not found", "no-such-model"),
    _space_case("bad augmentation argument among the choices",
                lambda: space_doc({"augmentation.train": {"choice": [
                    [], [{"ColorJitter": {"brightness": "lots"}}]]}}),
                "space.augmentation.train", "ColorJitter: brightness:"),
    _space_case("base_overrides with a negative weight decay",
                lambda: space_doc(None, **{"training_args.weight_decay": -0.1}),
                "base_overrides.training_args.weight_decay", "must be >= 0"),
]

# ---------------------------------------------------------------------------------------------
# run YAML


def _run_case(name: str, raw: Callable[[], dict[str, Any]], key: str, *words: str) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        return train_argv(write_yaml(tmp / "run.yaml", raw()), tmp)

    return Case("run YAML", name, "train", build,
                lambda tmp: [f"{tmp / 'run.yaml'}: {key}: ", *words])


def _raw_run(name: str, content: bytes, *words: str) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        (tmp / "run.yaml").write_bytes(content)
        return train_argv(tmp / "run.yaml", tmp)

    return Case("run YAML", name, "train", build, lambda tmp: [str(tmp / "run.yaml"), *words])


VALID_RUN_TEXT = yaml.safe_dump(tiny_run(), sort_keys=False)

RUN_CASES = [
    _raw_run("gzip file", gzip.compress(VALID_RUN_TEXT.encode()), "gzip-compressed"),
    _raw_run("cp1252 comment", ("# données d'entraînement\n" + VALID_RUN_TEXT).encode("cp1252"),
             "not UTF-8 text", "line 1", "Windows-1252"),
    _raw_run("duplicate training key",
             VALID_RUN_TEXT.replace("  learning_rate: 0.001",
                                    "  learning_rate: 0.001\n  learning_rate: 0.1").encode(),
             "duplicate key 'learning_rate'", "first given at line"),
    _run_case("learning rate 0", lambda: tiny_run(**{"training_args.learning_rate": 0}),
              "training_args.learning_rate", "must be > 0"),
    _run_case("negative learning rate",
              lambda: tiny_run(**{"training_args.learning_rate": -1.0e-4}),
              "training_args.learning_rate", "must be > 0"),
    _run_case("NaN learning rate",
              lambda: tiny_run(**{"training_args.learning_rate": float("nan")}),
              "training_args.learning_rate", "finite"),
    _run_case("batch size 0",
              lambda: tiny_run(**{"training_args.per_device_train_batch_size": 0}),
              "training_args.per_device_train_batch_size", "must be >= 1"),
    _run_case("zero epochs", lambda: {**tiny_run(**{"training_args.num_train_epochs": 0}),
                                      "training_args": {"num_train_epochs": 0}},
              "training_args.num_train_epochs", "must be > 0"),
    _run_case("max_steps 0", lambda: tiny_run(**{"training_args.max_steps": 0}),
              "training_args.max_steps", "must be >= 1"),
    _run_case("negative warmup", lambda: tiny_run(**{"training_args.warmup_steps": -5}),
              "training_args.warmup_steps", "must be >= 0"),
    _run_case("logging steps 0", lambda: tiny_run(**{"training_args.logging_steps": 0}),
              "training_args.logging_steps", "must be > 0"),
    _run_case("adam beta2 above 1", lambda: tiny_run(**{"training_args.adam_beta2": 1.5}),
              "training_args.adam_beta2", "must be < 1, got 1.5"),
    _run_case("eval batch size 0", lambda: tiny_run(**{"evaluation.batch_size": 0}),
              "evaluation.batch_size", "must be >= 1"),
    Case("run YAML", "bad albumentations argument names the field", "train",
         lambda tmp, env: train_argv(write_yaml(tmp / "run.yaml", tiny_run(**{
             "augmentation.train": [{"HorizontalFlip": {"p": 0.5}},
                                    {"ColorJitter": {"brightness": -1}}]})), tmp),
         lambda tmp: [f"{tmp / 'run.yaml'}: augmentation.train[1]: ColorJitter: brightness: ",
                      "non negative"]),
    Case("run YAML", "a crop larger than the smallest image", "train",
         lambda tmp, env: train_argv(write_yaml(tmp / "run.yaml", tiny_run(**{
             "augmentation.train": [{"RandomCrop": {"height": 500, "width": 500, "p": 0.5}}]})),
             tmp),
         lambda tmp: [f"{tmp / 'run.yaml'}: augmentation.train: fails on image id ",
                      "the split's smallest", "CropSizeError"]),
    Case("run YAML", "model overrides that build but cannot run", "train",
         lambda tmp, env: train_argv(write_yaml(tmp / "run.yaml", tiny_run(**{
             "model.config_overrides": {"d_model": 65}})), tmp),
         lambda tmp: [f"{tmp / 'run.yaml'}: model.config_overrides: the model does not run "
                      "with these overrides: "]),
    Case("run YAML", "unknown albumentations transform", "train",
         lambda tmp, env: train_argv(write_yaml(tmp / "run.yaml", tiny_run(**{
             "augmentation.train": [{"RandomFlipp": {}}]})), tmp),
         lambda tmp: ["augmentation.train[0]: ", "'RandomFlipp'"]),
    Case("run YAML", "--config is a folder", "train",
         lambda tmp, env: (tmp / "configs").mkdir() or train_argv(tmp / "configs", tmp),
         lambda tmp: [f"{tmp / 'configs'}: is a folder, not a file"]),
]

# ---------------------------------------------------------------------------------------------
# COCO JSON and images (through `python -m detr_core.train`, a few through the search driver)


def _coco_run(tmp: Path, edit: Callable[[CocoWriter, Path], dict[str, Any] | None] | None
              = None) -> Path:
    """A run config over a tiny two-split COCO dataset; `edit` may break it (returns splits)."""
    writer = CocoWriter(tmp / "coco")
    images = [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.png"}]
    anns = [{"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20]},
            {"image_id": 2, "category_id": 2, "bbox": [10, 8, 16, 12]}]
    splits = {"train": writer("train", images, anns, {1: "a", 2: "b"}),
              "val": writer("val", images, anns, {1: "a", 2: "b"})}
    if edit is not None:
        splits.update(edit(writer, tmp) or {})
    raw = tiny_run()
    raw["data"] = {name: {"annotations": s.annotations, "images": s.images}
                   for name, s in splits.items()}
    return write_yaml(tmp / "run.yaml", raw)


def _edit_json(tmp: Path, split: str, change: Callable[[dict], None]) -> None:
    path = tmp / "coco" / f"{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _coco_case(name: str, change: Callable[[dict], None], *words: str,
               split: str = "train") -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        config = _coco_run(tmp)
        _edit_json(tmp, split, change)
        return train_argv(config, tmp)

    return Case("COCO JSON", name, "train", build,
                lambda tmp: [f"{tmp / 'coco' / (split + '.json')}: ", *words])


def _raw_coco(name: str, content: Callable[[Path], bytes], *words: str) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        config = _coco_run(tmp)
        path = tmp / "coco" / "train.json"
        path.write_bytes(content(path))
        return train_argv(config, tmp)

    return Case("COCO JSON", name, "train", build,
                lambda tmp: [f"{tmp / 'coco' / 'train.json'}: ", *words])


def _set(key: str, value: Any, index: int = 0, where: str = "images") -> Callable[[dict], None]:
    def change(data: dict) -> None:
        data[where][index][key] = value
    return change


COCO_CASES = [
    _coco_case("empty train split", lambda d: d.update(images=[], annotations=[]),
               "the split has no images"),
    _coco_case("empty val split", lambda d: d.update(images=[], annotations=[]),
               "the split has no images", split="val"),
    _raw_coco("cp1252 category names",
              lambda p: p.read_text().replace('"a"', '"voilà"').encode("cp1252"),
              "not UTF-8 text", "Windows-1252"),
    _raw_coco("gzip-compressed JSON", lambda p: gzip.compress(p.read_bytes()), "gzip"),
    _raw_coco("truncated JSON", lambda p: p.read_bytes()[:40], "not valid JSON (line 1"),
    _coco_case("annotation of a missing image", _set("image_id", 99, where="annotations"),
               "annotation id 1: image_id 99 is not in `images`"),
    _coco_case("box with a NaN", _set("bbox", [1, 1, 5, float("nan")], where="annotations"),
               "annotation id 1: bbox must be [x, y, width, height] finite numbers"),
    _coco_case("unknown category", _set("category_id", 7, where="annotations"),
               "annotation id 1: category_id 7 is not in `categories`"),
    _coco_case("duplicate image id", _set("id", 2), "image id 2: duplicate image id"),
    _coco_case("image record without width", lambda d: d["images"][0].pop("width"),
               "image id 1: missing `width`"),
    _coco_case("string image id", _set("id", "one"), "images[0]: `id` must be an integer"),
    _coco_case("no categories", lambda d: d.update(categories=[]),
               "`categories` is empty"),
    _coco_case("val has a category train lacks",
               lambda d: d["categories"].append({"id": 9, "name": "z"}), "category id 9",
               split="val"),
]


def _image_case(name: str, image: str, breaks: Callable[[Path], None], *words: str,
                split: str = "train", image_id: int | None = None) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        config = _coco_run(tmp)
        breaks(tmp / "coco" / split / image)
        return train_argv(config, tmp)

    number = image_id if image_id is not None else int(image.split(".")[0])
    return Case("images", name, "train", build, lambda tmp: [
        f"{tmp / 'coco' / (split + '.json')}: image id {number}: image file "
        f"{tmp / 'coco' / split / image} ", *words])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _lfs_pointer(path: Path) -> None:
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
                    "size 48213\n")


def _replace_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


IMAGE_CASES = [
    _image_case("truncated JPEG", "1.jpg", _truncate, "truncated or corrupt JPEG"),
    _image_case("truncated PNG", "2.png", _truncate, "truncated or corrupt PNG"),
    _image_case("zero bytes", "1.jpg", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    _image_case("Git LFS pointer", "2.png", _lfs_pointer, "Git LFS pointer", "git lfs pull"),
    _image_case("text file with an image name", "1.jpg",
                lambda p: p.write_text("not an image"), "is not an image PIL can read"),
    _image_case("size differs from the record", "2.png",
                lambda p: write_image(p, 30, 30), "is 30x30 pixels but its COCO record says 64x48"),
    _image_case("image file missing", "1.jpg", lambda p: p.unlink(), "not found"),
    _image_case("folder in place of the image", "2.png", _replace_dir, "is a folder"),
    _image_case("truncated val image", "1.jpg", _truncate, "truncated or corrupt JPEG",
                split="val"),
]


def _search_over_coco(tmp: Path, breaks: Callable[[Path], None]) -> list[str]:
    """A search space whose base is a COCO run config with one broken image."""
    config = _coco_run(tmp)
    breaks(tmp / "coco")
    doc = {"experiment": {"name": "bad", "num_samples": 2, "scheduler": {"max_t": 6}},
           "base": str(config),
           "space": {"training_args.learning_rate": {"loguniform": [1.0e-4, 1.0e-3]}}}
    return search_argv(write_yaml(tmp / "space.yaml", doc), tmp)


SEARCH_DATA_CASES = [
    Case("images", "search: truncated JPEG found by the driver before Ray starts", "search",
         lambda tmp, env: _search_over_coco(tmp, lambda c: _truncate(c / "train" / "1.jpg")),
         lambda tmp: [f"{tmp / 'coco' / 'train.json'}: image id 1: image file ",
                      "truncated or corrupt JPEG"]),
    Case("COCO JSON", "search: empty train split found by the driver before Ray starts",
         "search",
         lambda tmp, env: _search_over_coco(tmp, lambda c: _edit_json(
             tmp, "train", lambda d: d.update(images=[], annotations=[]))),
         lambda tmp: [f"{tmp / 'coco' / 'train.json'}: the split has no images"]),
]

# ---------------------------------------------------------------------------------------------
# model folders


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `save_pretrained` DETR folder (tiny preset, two classes)."""
    from transformers import DetrImageProcessor

    from detr_core.config.run_config import ModelConfig
    from detr_core.data.coco import LabelMap
    from detr_core.model.build import build_model

    folder = tmp_path_factory.mktemp("model") / "tiny-detr"
    label_map = LabelMap((1, 2), ("a", "b"))
    build_model(ModelConfig(preset="tiny", image_size=64), label_map, "giou",
                False).save_pretrained(folder)
    DetrImageProcessor().save_pretrained(folder)
    return folder


def _model_copy(tmp: Path, env: dict, breaks: Callable[[Path], None]) -> Path:
    folder = tmp / "my-model"
    shutil.copytree(env["tiny_model"], folder)
    breaks(folder)
    return folder


def _train_with_model(name: str, breaks: Callable[[Path], None], culprit: str,
                      *words: str) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        folder = _model_copy(tmp, env, breaks)
        raw = tiny_run()
        raw["model"] = {"checkpoint": str(folder), "image_size": 64}
        return train_argv(write_yaml(tmp / "run.yaml", raw), tmp)

    return Case("model folders", name, "train", build,
                lambda tmp: [f"{tmp / 'my-model' / culprit}".rstrip("/") + ": model.checkpoint: ",
                             *words], extra={"needs_model": True})


def _evaluate_model(name: str, breaks: Callable[[Path], None], culprit: str,
                    *words: str) -> Case:
    def build(tmp: Path, env: dict) -> list[str]:
        folder = _model_copy(tmp, env, breaks)
        config = write_yaml(tmp / "run.yaml", tiny_run())
        return ["--model", str(folder), "--config", str(config)]

    return Case("model folders", name, "evaluate", build,
                lambda tmp: [f"{tmp / 'my-model' / culprit}".rstrip("/") + ": --model: ",
                             *words], extra={"model_dir": "my-model", "needs_model": True})


def _truncate_weights(folder: Path) -> None:
    _truncate(folder / "model.safetensors")


def _shard(folder: Path) -> None:
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))


MODEL_CASES = [
    _train_with_model("truncated model.safetensors (train)", _truncate_weights,
                      "model.safetensors", "corrupt or truncated safetensors file"),
    _evaluate_model("truncated model.safetensors (evaluate)", _truncate_weights,
                    "model.safetensors", "corrupt or truncated safetensors file"),
    _train_with_model("zero-byte weights", lambda f: (f / "model.safetensors").write_bytes(b""),
                      "model.safetensors", "header too small"),
    _train_with_model("config.json is not JSON",
                      lambda f: (f / "config.json").write_text("{'model_type': detr"),
                      "config.json", "not valid JSON"),
    _train_with_model("config.json of another model type",
                      lambda f: (f / "config.json").write_text('{"model_type": "bert"}'),
                      "config.json", "'bert' model, not a supported DETR-family"),
    _train_with_model("no weights", lambda f: (f / "model.safetensors").unlink(), "",
                      "no model weights"),
    _train_with_model("sharded index names a missing shard", _shard,
                      "model.safetensors.index.json", "model-00002-of-00002.safetensors",
                      "missing"),
    _evaluate_model("evaluate a folder without config.json",
                    lambda f: (f / "config.json").unlink(), "",
                    "not a save_pretrained model folder (no config.json)"),
    Case("model folders", "missing local checkpoint folder is not a Hub name", "train",
         lambda tmp, env: train_argv(write_yaml(tmp / "run.yaml", {
             **tiny_run(), "model": {"checkpoint": "./models/finetuned", "image_size": 64}}),
             tmp),
         lambda tmp: [f"{tmp / 'models' / 'finetuned'}: model.checkpoint: "
                      "local model folder not found"]),
    Case("model folders", "Hub name not cached while offline", "train",
         lambda tmp, env: train_argv(write_yaml(tmp / "run.yaml", {
             **tiny_run(), "model": {"checkpoint": "someone/detr-not-cached", "image_size": 64}}),
             tmp),
         lambda tmp: ["model.checkpoint: 'someone/detr-not-cached' is not a local folder",
                      "Hugging Face Hub", "offline"]),
    Case("model folders", "evaluate a folder that does not exist", "evaluate",
         lambda tmp, env: ["--model", str(tmp / "nope"),
                           "--config", str(write_yaml(tmp / "run.yaml", tiny_run()))],
         lambda tmp: [f"{tmp / 'nope'}: --model: model folder not found"]),
    Case("model folders", "evaluate a test split the run config does not have", "evaluate",
         lambda tmp, env: ["--model", str(_model_copy(tmp, env, lambda folder: None)),
                           "--config", str(write_yaml(tmp / "run.yaml", tiny_run(**{
                               "data.synthetic.num_test": 0}))), "--split", "test"],
         lambda tmp: [f"{tmp / 'run.yaml'}: data: this run config has no test split"],
         extra={"model_dir": "my-model", "needs_model": True}),
]

# ---------------------------------------------------------------------------------------------
# CLI flags


def _flags(cli: str, name: str, argv: Callable[[Path], list[str]], *words: str) -> Case:
    return Case("CLI flags", name, cli, lambda tmp, env: argv(tmp), lambda tmp: list(words))


def _valid_space(tmp: Path) -> Path:
    return _space_file(tmp, space_doc())


FLAG_CASES = [
    _flags("search", "no --space", lambda tmp: [], "required: --space"),
    _flags("search", "--num-samples 0",
           lambda tmp: search_argv(_valid_space(tmp), tmp, "--num-samples", "0"),
           "argument --num-samples: must be >= 1, got 0"),
    _flags("search", "unknown flag", lambda tmp: search_argv(_valid_space(tmp), tmp, "--fast"),
           "unrecognized arguments: --fast"),
    _flags("search", "--time-budget in words",
           lambda tmp: search_argv(_valid_space(tmp), tmp, "--time-budget", "two hours"),
           "argument --time-budget", "'two hours'"),
    _flags("search", "--cpus-per-trial 1.5",
           lambda tmp: search_argv(_valid_space(tmp), tmp, "--cpus-per-trial", "1.5"),
           "experiment.resources.cpus_per_trial (from --cpus-per-trial)", "whole number"),
    _flags("search", "--name that is no folder name",
           lambda tmp: search_argv(_valid_space(tmp), tmp, "--name", "my search!"),
           "experiment.name (from --name)", "folder name"),
    _flags("search", "--space file missing",
           lambda tmp: search_argv(tmp / "spaces" / "iou.yaml", tmp),
           "spaces/iou.yaml: file not found"),
    _flags("search", "--resume with nothing to resume",
           lambda tmp: search_argv(_valid_space(tmp), tmp, "--resume"),
           "out/bad: no experiment to resume there"),
    _flags("train", "train: unknown flag",
           lambda tmp: ["--output-dir", str(out_dir(tmp)), "--epochs", "3"],
           "unrecognized arguments: --epochs 3", "python -m detr_core.train --help"),
    _flags("evaluate", "evaluate: --split bogus",
           lambda tmp: ["--model", str(tmp), "--split", "bogus"],
           "argument --split: invalid choice: 'bogus'"),
    _flags("export", "export: not an experiment folder",
           lambda tmp: [str(tmp / "results" / "iou")],
           "results/iou: no such folder"),
]

CASES = [*SPACE_CASES, *RUN_CASES, *COCO_CASES, *IMAGE_CASES, *SEARCH_DATA_CASES,
         *MODEL_CASES, *FLAG_CASES]


def test_the_corpus_covers_every_family() -> None:
    families: dict[str, int] = {}
    for case in CASES:
        families[case.family] = families.get(case.family, 0) + 1
    assert len(CASES) >= 60, len(CASES)
    assert set(families) == {"space YAML", "run YAML", "COCO JSON", "images", "model folders",
                             "CLI flags"}
    assert min(families.values()) >= 5, families


@pytest.mark.parametrize("case", CASES, ids=[f"{c.family}: {c.name}" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
        case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        request: pytest.FixtureRequest) -> None:
    env = {"tiny_model": request.getfixturevalue("tiny_model")} \
        if case.extra.get("needs_model") else {}
    argv = case.build(tmp_path, env)
    model_dir = tmp_path / case.extra["model_dir"] if "model_dir" in case.extra else None
    before = sorted(p.name for p in model_dir.iterdir()) if model_dir else None
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        _main(case.cli)(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert info.value.code == 2, captured
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("error: "), line
    for word in case.culprit(tmp_path):
        assert word in line, (word, line)
    assert "Traceback" not in captured.err + captured.out
    assert not out_dir(tmp_path).exists(), sorted(out_dir(tmp_path).rglob("*"))
    if model_dir is not None:
        assert sorted(p.name for p in model_dir.iterdir()) == before
    if case.cli == "search":
        import sys

        ray = sys.modules.get("ray")
        assert ray is None or not ray.is_initialized()
