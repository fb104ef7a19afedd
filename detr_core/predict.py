"""Apply a trained DETR to a folder of images: `<out>/detections.json` (COCO, annotations with
a `score`) and `<out>/images/` (detections drawn), built in `<out>.partial` and renamed whole;
predict never deletes a file it did not write.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detr_core.files.builtin_models import resolve_checkpoint
from detr_core.files.errors import ArgumentParser, UserInputError, exit_on_user_error
from detr_core.files.file_io import CATEGORIES_FILE, replace_folder
from detr_core.model.model_check import check_model_folder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DETECTIONS_FILE = "detections.json"
DRAWN_DIR = "images"
PARTIAL_SUFFIX = ".partial"


def drawn_names(relatives: Sequence[str]) -> list[str]:
    """A unique PNG name per input, mirroring its relative path (`a.jpg` -> `a.jpg.png`); names
    that still meet (also by case, for case-insensitive disks) get `-2`, `-3`."""
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


def predict_images(model: Any, processor: Any, images: Sequence[Any], batch_size: int
                   ) -> list[Any]:
    """`ImageBoxes` (original pixels, every query) of each image, in order."""
    from detr_core.evaluate import predict
    items = [(image, {"image_id": i, "annotations": []}) for i, image in enumerate(images)]
    return predict(model, items, processor, batch_size)[0]


def check_replaceable(folder: Path, staging: bool) -> None:
    """Refuse an output or staging `folder` holding what predict did not write: only
    `detections.json` (with `info.score_threshold`, unless a crash cut a staging one short) and
    `images/` of PNG files, never a symbolic link, are its own."""

    def marked(detections: Path) -> bool:
        try:
            data = json.loads(detections.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        info = data.get("info") if isinstance(data, dict) else None
        return isinstance(info, dict) and "score_threshold" in info

    key = "--out staging folder" if staging else "--out"
    if folder.is_symlink():
        raise UserInputError("is a symbolic link: choose another --out", source=folder, key=key)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserInputError("is a file, not a folder: choose another --out", source=folder,
                             key=key)
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name == DRAWN_DIR and entry.is_dir() and not entry.is_symlink():
            foreign += [f"{DRAWN_DIR}/{path.relative_to(entry).as_posix()}"
                        for path in sorted(entry.rglob("*")) if path.is_symlink()
                        or not (path.is_dir() or path.suffix.lower() == ".png")]
        elif not (entry.name == DETECTIONS_FILE and entry.is_file() and not entry.is_symlink()
                  and (staging or marked(entry))):
            foreign.append(entry.name)
    if not (staging or foreign or (folder / DETECTIONS_FILE).is_file()):
        foreign = [entry.name for entry in sorted(folder.iterdir())]
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise UserInputError(f"holds files predict did not write ({', '.join(foreign[:3])}{more})"
                             ", and predict replaces this folder whole: choose another --out",
                             source=folder, key=key)


def output_folder(out_dir: Path, images_dir: Path) -> Path:
    """`--out` resolved, checked before any writing: it and its `.partial` staging sibling must
    be replaceable and neither around nor inside the images."""
    out_dir, images_dir = out_dir.resolve(), images_dir.resolve()
    for staging in (False, True):
        folder = out_dir.with_name(out_dir.name + PARTIAL_SUFFIX) if staging else out_dir
        if folder == images_dir:
            problem = "is the --images folder"
        elif images_dir.is_relative_to(folder):  # also refuses `/`, which has no name
            problem = f"contains the --images folder {images_dir}"
        elif folder.is_relative_to(images_dir):
            problem = (f"is inside the --images folder {images_dir} (its drawn images would be "
                       "read as photos next time)")
        else:
            problem = None
        if problem:
            raise UserInputError(f"{problem}: choose another --out", source=folder, key="--out")
        parent = next(parent for parent in out_dir.parents if parent.exists())
        if not parent.is_dir():  # out_dir is created under its nearest existing ancestor
            raise UserInputError(f"{parent} is a file: choose another --out", source=out_dir,
                                 key="--out")
        check_replaceable(folder, staging)
    return out_dir


def write_output(out_dir: Path, coco: dict[str, Any], relatives: Sequence[str],
                 images: Sequence[Any], found: Sequence[Any], threshold: float) -> None:
    """Fill `coco`, write it and every drawn image into a fresh `<out>.partial` and put that in
    place of `out_dir` (checked once more: files may have appeared while the model ran)."""
    from PIL import Image

    from detr_core.evaluation.visualize import DETECTION_COLOUR, draw_detections
    staging = out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)
    shutil.rmtree(staging, ignore_errors=True)  # a killed run's leftover, checked as ours
    try:
        (staging / DRAWN_DIR).mkdir(parents=True)
        for image_id, (relative, drawn, image, boxes) in enumerate(
                zip(relatives, drawn_names(relatives), images, found, strict=True), start=1):
            coco["images"].append({"id": image_id, "file_name": relative,
                                   "width": int(image.shape[1]), "height": int(image.shape[0]),
                                   "drawn": f"{DRAWN_DIR}/{drawn}"})
            keep = boxes.scores >= threshold
            drawn_boxes, captions = boxes.boxes[keep].tolist(), []
            for (x0, y0, x1, y1), label, score in zip(drawn_boxes, boxes.labels[keep].tolist(),
                                                      boxes.scores[keep].tolist(), strict=True):
                category = coco["categories"][label]
                coco["annotations"].append({
                    "id": len(coco["annotations"]) + 1, "image_id": image_id,
                    "category_id": category["id"], "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0), "score": score, "iscrowd": 0})
                captions.append(f"{category['name']} {score:.2f}")
            picture = draw_detections(image, drawn_boxes, captions, DETECTION_COLOUR, scale=1.0)
            target = staging / DRAWN_DIR / drawn
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture.permute(1, 2, 0).numpy()).save(target)
        (staging / DETECTIONS_FILE).write_text(json.dumps(coco, indent=1))
        check_replaceable(out_dir, staging=False)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(exc, OSError):
            raise
        where = f" ({exc.filename})" if exc.filename else ""  # a folder this user cannot write
        raise UserInputError(f"cannot write there{where}: {exc.strerror or exc}",
                             source=out_dir, key="--out") from None
    replace_folder(staging, out_dir)


def predict_folder(model: str, images_dir: Path, out_dir: Path, threshold: float = 0.5,
                   batch_size: int = 16) -> dict[str, Any]:
    """Detect objects in every image of `images_dir`, every input checked before the model runs."""
    if not 0.0 <= threshold <= 1.0:
        raise UserInputError(f"must be within [0, 1], got {threshold}", key="--threshold")
    if batch_size < 1:
        raise UserInputError(f"must be >= 1, got {batch_size}", key="--batch-size")
    folder = Path(resolve_checkpoint(model))  # a save_pretrained folder or `builtin:<name>`
    if not (folder / "config.json").is_file():
        raise UserInputError("not a save_pretrained model folder (no config.json)",
                             source=folder, key="--model")
    check_model_folder(folder, key="--model")  # config parses, weight files whole
    if not (folder / "preprocessor_config.json").is_file():
        raise UserInputError("no preprocessor_config.json (the image processor the model was "
                             "trained with)", source=folder, key="--model")
    if not images_dir.is_dir():
        raise UserInputError("folder not found", source=images_dir, key="--images")
    paths = sorted(p for p in images_dir.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserInputError(f"no image files ({', '.join(IMAGE_SUFFIXES)})", source=images_dir,
                             key="--images")
    out_dir = output_folder(out_dir, images_dir)
    from detr_core.data.images import load_rgb
    from detr_core.model.build import load_image_processor, load_trained_model
    images = []
    for path in paths:  # all decoded first: a broken file stops the run before any output
        try:
            images.append(load_rgb(str(path)))
        except (OSError, ValueError, SyntaxError) as exc:
            raise UserInputError(f"cannot decode image: {exc}", source=path) from None
    detr, processor = load_trained_model(folder, with_loss=False), load_image_processor(folder)
    categories = (json.loads((folder / CATEGORIES_FILE).read_text())  # written by training
                  if (folder / CATEGORIES_FILE).is_file() else
                  [{"id": int(label), "name": name}
                   for label, name in sorted(detr.config.id2label.items())])
    found = predict_images(detr, processor, images, batch_size)
    coco: dict[str, Any] = {"info": {"description": f"detections of {folder}",
                                     "score_threshold": threshold},
                            "images": [], "categories": categories, "annotations": []}
    write_output(out_dir, coco, [path.relative_to(images_dir).as_posix() for path in paths],
                 images, found, threshold)
    return coco


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m detr_core.predict", description="Detect objects in a "
                            "folder of images with a trained DETR: COCO detections, drawn images.")
    parser.add_argument("--model", required=True, help="save_pretrained folder or builtin:<name>")
    parser.add_argument("--images", type=Path, required=True, help="folder of images")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new, empty or an "
                        "earlier predict output, which is replaced)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="keep detections with at least this score (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    coco = predict_folder(args.model, args.images, args.out, args.threshold, args.batch_size)
    print(f"{len(coco['annotations'])} detections (score >= {args.threshold}) in "
          f"{len(coco['images'])} images: {args.out / DETECTIONS_FILE}, "
          f"{args.out / DRAWN_DIR}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
