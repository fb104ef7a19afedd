"""Apply a trained DETR to a folder of images: COCO-format detections and drawn images.

    python -m detr_core.predict --model results/iou/best_model --images photos/ --out preds/
    detr-predict --model results/iou/best_model --images photos/ --out preds/ --threshold 0.3

How a user applies a search's winner. Writes `<out>/detections.json`, a COCO dataset file
(`images`, `categories`, and `annotations` that carry a `score`: any COCO tool opens it, and
its `annotations` list is also valid COCO *results* format), and under `<out>/images/` each
image with its detections (score >= threshold) drawn, at its input's relative path (sub-folders
kept) as PNG: `a.png` stays `a.png`, `a.jpg` becomes `a.jpg.png`, so `a.jpg` and `a.png` never
overwrite each other (`drawn_names`; each image record names its file as `drawn`). Images are
read as training reads them (`detr_core.data.images`: EXIF orientation applied, any mode as
8-bit RGB), resized and padded by the model folder's own image processor and decoded exactly as
in evaluation (`detr_core.evaluation.metrics`), so boxes are in the displayed images' pixels.

The output is built in `<out>.partial` and renamed to `<out>` whole, replacing an earlier one,
so `<out>` (resolved: `.` is the current folder) must be new, empty or an earlier predict
output, and never the images folder or one holding it; anything else is refused before any
writing (`output_folder`): predict never deletes a file it did not write.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from detr_core.files.errors import ArgumentParser, UserInputError, exit_on_user_error
from detr_core.files.file_io import CATEGORIES_FILE, replace_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DETECTIONS_FILE = "detections.json"
DRAWN_DIR = "images"
PARTIAL_SUFFIX = ".partial"


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder` (any depth), sorted; a folder without any is an error."""
    if not folder.is_dir():
        raise UserInputError("folder not found", source=folder, key="--images")
    found = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise UserInputError(f"no image files ({', '.join(IMAGE_SUFFIXES)})", source=folder,
                             key="--images")
    return found


def drawn_names(relatives: Sequence[str]) -> list[str]:
    """A unique PNG name per input, mirroring its relative path (see the module docstring);
    names that would still meet (also by case, for case-insensitive disks) get `-2`, `-3`."""
    names, taken = [], set()
    for relative in relatives:
        base = relative if relative.lower().endswith(".png") else f"{relative}.png"
        name, n = base, 1
        while name.casefold() in taken:
            n += 1
            name = f"{base[:-4]}-{n}.png"
        taken.add(name.casefold())
        names.append(name)
    return names


def read_images(paths: Sequence[Path]) -> list[Any]:
    """Every image decoded to RGB first, so a broken file stops the run before any output."""
    from detr_core.data.images import load_rgb

    images = []
    for path in paths:
        try:
            images.append(load_rgb(str(path)))
        except (OSError, ValueError, SyntaxError) as exc:
            raise UserInputError(f"cannot decode image: {exc}", source=path) from None
    return images


def model_categories(model_dir: Path, id2label: dict[int, str]) -> list[dict[str, Any]]:
    """COCO categories in label order: from `categories.json` (written by training), else the
    config's label names numbered by label."""
    path = model_dir / CATEGORIES_FILE
    if path.is_file():
        return json.loads(path.read_text())
    return [{"id": int(label), "name": name} for label, name in sorted(id2label.items())]


def model_folder(model: str) -> Path:
    """The folder of a `save_pretrained` model or `builtin:<name>`, checked for its files."""
    from detr_core.files.builtin_models import resolve_checkpoint
    from detr_core.model.model_check import check_model_folder

    folder = Path(resolve_checkpoint(model))
    if not (folder / "config.json").is_file():
        raise UserInputError("not a save_pretrained model folder (no config.json)",
                             source=folder, key="--model")
    check_model_folder(folder, key="--model")  # config parses, weight files whole
    if not (folder / "preprocessor_config.json").is_file():
        raise UserInputError("no preprocessor_config.json (the image processor the model was "
                             "trained with)", source=folder, key="--model")
    return folder


def load_model_folder(folder: Path) -> tuple[Any, Any]:
    """(model, image processor) of a checked model folder."""
    from detr_core.model.build import load_image_processor, load_trained_model

    return load_trained_model(folder, with_loss=False), load_image_processor(folder)


def predict_images(model: Any, processor: Any, images: Sequence[Any], batch_size: int
                   ) -> list[Any]:
    """`ImageBoxes` (original pixels, every query) of each image, in order."""
    import torch

    from detr_core.data.dataset import DetrCollator
    from detr_core.evaluate import pick_device
    from detr_core.evaluation.metrics import decode_predictions
    from detr_core.model.families import family_of_model

    device = pick_device()
    family = family_of_model(model)
    model.to(device).eval()
    collate = DetrCollator(processor)
    found = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            batch = collate([(image, {"image_id": start + i, "annotations": []})
                             for i, image in enumerate(chunk)])
            outputs = model(pixel_values=batch["pixel_values"].to(device),
                            pixel_mask=batch["pixel_mask"].to(device))
            found.extend(decode_predictions(outputs.logits.cpu(), outputs.pred_boxes.cpu(),
                                            batch["labels"], family))
    return found


def staging_path(out_dir: Path) -> Path:
    """The sibling `<out>.partial` the output is built in, renamed to `out_dir` when whole."""
    return out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)


def has_predict_mark(detections: Path) -> bool:
    """Whether `detections` is a detections file predict wrote: JSON whose `info` carries the
    `score_threshold` predict always records (a user's own COCO file of that name has not)."""
    try:
        data = json.loads(detections.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("info"), dict) \
        and "score_threshold" in data["info"]


def foreign_entries(folder: Path, staging: bool) -> list[str]:
    """What in `folder` predict did not write there, so must never be deleted with it.

    Predict writes only `detections.json` (with its mark; a staging folder's may be cut short
    by a crash, so there any file of that name passes) and `images/`, a folder of PNG files.
    Symbolic links are never predict's own.
    """
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name == DETECTIONS_FILE and entry.is_file() and not entry.is_symlink():
            if not (staging or has_predict_mark(entry)):
                foreign.append(entry.name)
        elif entry.name == DRAWN_DIR and entry.is_dir() and not entry.is_symlink():
            foreign.extend(f"{DRAWN_DIR}/{path.relative_to(entry).as_posix()}"
                           for path in sorted(entry.rglob("*"))
                           if path.is_symlink() or not (path.is_dir()
                                                        or path.suffix.lower() == ".png"))
        else:
            foreign.append(entry.name)
    return foreign


def refuse_foreign(folder: Path, foreign: Sequence[str], key: str) -> None:
    """Raise the one-line error naming `folder` and the first few entries predict did not
    write (`key`: `--out` or its staging folder)."""
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    raise UserInputError(f"holds files predict did not write ({shown}), and predict replaces "
                         "this folder whole: choose another --out", source=folder, key=key)


def check_replaceable(folder: Path, staging: bool) -> None:
    """`folder` (the output or its staging folder) may be replaced: absent, an empty folder,
    or one holding only what predict writes (a finished output also its marked
    `detections.json`). Anything else is the user's and refused (nothing deleted)."""
    key = "--out staging folder" if staging else "--out"
    if folder.is_symlink():
        raise UserInputError("is a symbolic link: choose another --out", source=folder, key=key)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserInputError("is a file, not a folder: choose another --out", source=folder,
                             key=key)
    foreign = foreign_entries(folder, staging)
    if not (staging or foreign or (folder / DETECTIONS_FILE).is_file()):
        foreign = [entry.name for entry in sorted(folder.iterdir())]  # images/ alone: not ours
    if foreign:
        refuse_foreign(folder, foreign, key)


def check_not_around_images(folder: Path, images_dir: Path) -> None:
    """Refuse an output (or staging) folder that is the images folder or holds it (replacing it
    would delete the very photos predict reads) or lies inside it (the next run would read
    the drawn images as photos)."""
    if folder == images_dir:
        raise UserInputError("is the --images folder: choose another --out", source=folder,
                             key="--out")
    if images_dir.is_relative_to(folder):
        raise UserInputError(f"contains the --images folder {images_dir}: choose another --out",
                             source=folder, key="--out")
    if folder.is_relative_to(images_dir):  # a run after this one would read the drawn images
        raise UserInputError(f"is inside the --images folder {images_dir} (its drawn images "
                             "would be read as photos next time): choose another --out",
                             source=folder, key="--out")


def check_parent_folders(out_dir: Path) -> None:
    """The nearest existing ancestor of `out_dir` must be a folder (it is created under it)."""
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserInputError(f"{parent} is a file: choose another --out",
                                     source=out_dir, key="--out")
            return


def output_folder(out_dir: Path, images_dir: Path) -> Path:
    """`--out` resolved (so `.` and `..` are real folders with a name), checked before any
    writing that replacing it and its `.partial` staging sibling deletes nothing of the user's:
    each may be new, empty or an earlier predict output, and neither may hold the images."""
    out_dir, images_dir = out_dir.resolve(), images_dir.resolve()
    check_not_around_images(out_dir, images_dir)  # also refuses `/`, which has no name
    check_parent_folders(out_dir)
    check_replaceable(out_dir, staging=False)
    staging = staging_path(out_dir)
    check_not_around_images(staging, images_dir)
    check_replaceable(staging, staging=True)
    return out_dir


def coco_annotations(image_id: int, boxes: Any, categories: Sequence[dict[str, Any]],
                     threshold: float, first_id: int) -> tuple[list[dict[str, Any]], list[Any],
                                                               list[str]]:
    """COCO annotations of one image's detections scoring >= `threshold` (ids from
    `first_id`), with their boxes in pixels and captions to draw."""
    keep = boxes.scores >= threshold
    annotations, drawn_boxes, captions = [], [], []
    for box, label, score in zip(boxes.boxes[keep].tolist(), boxes.labels[keep].tolist(),
                                 boxes.scores[keep].tolist(), strict=True):
        category = categories[label]
        x0, y0, x1, y1 = box
        annotations.append({
            "id": first_id + len(annotations), "image_id": image_id,
            "category_id": category["id"], "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": (x1 - x0) * (y1 - y0), "score": score, "iscrowd": 0})
        drawn_boxes.append(box)
        captions.append(f"{category['name']} {score:.2f}")
    return annotations, drawn_boxes, captions


def write_output(staging: Path, coco: dict[str, Any], relatives: Sequence[str],
                 images: Sequence[Any], found: Sequence[Any], threshold: float) -> None:
    """Fill `coco` and write it and every drawn image into the fresh folder `staging`."""
    from PIL import Image

    from detr_core.evaluation.visualize import DETECTION_COLOUR, draw_detections

    (staging / DRAWN_DIR).mkdir(parents=True)
    for image_id, (relative, drawn, image, boxes) in enumerate(
            zip(relatives, drawn_names(relatives), images, found, strict=True), start=1):
        coco["images"].append({"id": image_id, "file_name": relative,
                               "width": int(image.shape[1]), "height": int(image.shape[0]),
                               "drawn": f"{DRAWN_DIR}/{drawn}"})
        annotations, drawn_boxes, captions = coco_annotations(
            image_id, boxes, coco["categories"], threshold, len(coco["annotations"]) + 1)
        coco["annotations"].extend(annotations)
        picture = draw_detections(image, drawn_boxes, captions, DETECTION_COLOUR, scale=1.0)
        target = staging / DRAWN_DIR / drawn
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture.permute(1, 2, 0).numpy()).save(target)
    (staging / DETECTIONS_FILE).write_text(json.dumps(coco, indent=1))


def publish_output(out_dir: Path, build: Callable[[Path], None]) -> None:
    """Run `build` on a fresh `<out>.partial` folder, then put it in place of `out_dir` (an
    earlier output, checked by `output_folder`) in one rename: readers never see half an
    output (`detr_core.files.replace_folder`), and a failed build leaves no `.partial` behind.
    `out_dir` is checked once more just before it goes: the user may have put files there
    while the model ran."""
    staging = staging_path(out_dir)
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftover, checked as ours
    try:
        build(staging)
        check_replaceable(out_dir, staging=False)
    except OSError as exc:  # a folder this user cannot write, a full disk
        shutil.rmtree(staging, ignore_errors=True)
        where = f" ({exc.filename})" if exc.filename else ""
        raise UserInputError(f"cannot write there{where}: {exc.strerror or exc}",
                             source=out_dir, key="--out") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, out_dir)


def predict_folder(model: str, images_dir: Path, out_dir: Path, threshold: float = 0.5,
                   batch_size: int = 16) -> dict[str, Any]:
    """Detect objects in every image of `images_dir`; write the COCO file and drawn images.

    Every check (flags, model, images, the output folder) comes before the model runs and
    anything is written; `out_dir` is replaced only when it holds nothing but an earlier
    output (`output_folder`)."""
    if not 0.0 <= threshold <= 1.0:
        raise UserInputError(f"must be within [0, 1], got {threshold}", key="--threshold")
    if batch_size < 1:
        raise UserInputError(f"must be >= 1, got {batch_size}", key="--batch-size")
    folder = model_folder(model)
    paths = find_images(images_dir)
    out_dir = output_folder(out_dir, images_dir)
    images = read_images(paths)
    detr, processor = load_model_folder(folder)
    categories = model_categories(folder, detr.config.id2label)
    found = predict_images(detr, processor, images, batch_size)

    coco: dict[str, Any] = {"info": {"description": f"detections of {folder}",
                                     "score_threshold": threshold},
                            "images": [], "categories": categories, "annotations": []}
    relatives = [path.relative_to(images_dir).as_posix() for path in paths]
    publish_output(out_dir, lambda staging: write_output(staging, coco, relatives, images,
                                                         found, threshold))
    return coco


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m detr_core.predict",
        description="Detect objects in a folder of images with a trained DETR: writes "
                    "COCO-format detections and the images with their boxes drawn.")
    parser.add_argument("--model", required=True,
                        help="save_pretrained folder (e.g. results/iou/best_model) or "
                             "builtin:<name>")
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument("--out", type=Path, required=True,
                        help=f"output folder: {DETECTIONS_FILE} and {DRAWN_DIR}/ (new, empty or an "
                             "earlier predict output, which is replaced)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="keep detections with at least this score (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=16)
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    coco = predict_folder(args.model, args.images, args.out, args.threshold, args.batch_size)
    print(f"{len(coco['annotations'])} detections (score >= {args.threshold}) in "
          f"{len(coco['images'])} images: {args.out / DETECTIONS_FILE}, "
          f"{args.out / DRAWN_DIR}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
