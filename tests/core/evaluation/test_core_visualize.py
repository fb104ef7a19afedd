"""detr_core.evaluation.visualize's `test_detections.png`: readable whatever the images' sizes.

Real photo datasets mix images of ~200 and ~2000 px. Each test draws images of very different
sizes, each a solid colour of its own, reads the PNG back and measures it: every image is
drawn at the one display height (`PANEL_HEIGHT`, width by its aspect ratio) with no black
padding, its boxes scale with it, and labels are the same size in the PNG on every image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from detr_core.data.coco import load_coco_split
from detr_core.evaluation.visualize import (
    DETECTION_COLOUR,
    GROUND_TRUTH_COLOUR,
    PANEL_HEIGHT,
    detection_grid,
    split_detection_grid,
)

BLUE = (30, 60, 220)
MAGENTA = (200, 30, 200)
CYAN = (20, 200, 200)


def solid(width: int, height: int, colour: tuple[int, int, int]) -> np.ndarray:
    return np.full((height, width, 3), colour, dtype=np.uint8)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def where(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 8) -> np.ndarray:
    """HxW mask of the pixels within `tolerance` of `colour` on every channel."""
    return (np.abs(pixels - np.array(colour)) <= tolerance).all(axis=-1)


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True in a 1-D array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def extents(mask: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Runs of the rows and of the columns a mask touches."""
    return runs(mask.any(axis=1)), runs(mask.any(axis=0))


def test_images_of_any_size_are_drawn_at_one_height_with_no_black_padding(
        coco_writer, tmp_path: Path) -> None:
    # (width, height, colour): a thumbnail, a small photo and a panorama, as COCO files
    sizes = {1: (60, 40, BLUE), 2: (400, 300, MAGENTA), 3: (1200, 200, CYAN)}
    paths = coco_writer("test", [{"id": i, "width": w, "height": h}
                                 for i, (w, h, _) in sizes.items()],
                        [{"image_id": 3, "category_id": 1, "bbox": [100, 50, 300, 100]}],
                        {1: "car"})
    for i, (w, h, colour) in sizes.items():
        Image.fromarray(solid(w, h, colour)).save(Path(paths.images) / f"{i}.png")
    split = load_coco_split(paths)
    results = [{"image_id": 3, "category_id": 1, "bbox": [700, 40, 200, 120], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [50, 50, 100, 100], "score": 0.1}]
    grid = split_detection_grid(split, ["car"], lambda label: 1, results, 0.5,
                                tmp_path / "out" / "test_detections.png")
    pixels = read_png(grid)

    tops = set()
    for w, h, colour in sizes.values():
        rows, columns = extents(where(pixels, colour))
        assert len(rows) == 1 and len(columns) == 2, colour  # one row: truth | detections
        (top, bottom), = rows
        assert abs((bottom - top) - PANEL_HEIGHT) <= 1, colour
        for start, stop in columns:  # each panel keeps the image's aspect ratio
            assert abs((stop - start) - PANEL_HEIGHT * w / h) <= 1, colour
        tops.add(top)
    assert len(tops) == 1  # the three pairs share one row
    near_black = (pixels.max(axis=-1) < 40).mean()
    assert near_black < 0.01  # label text only: no black canvas around the small images

    def red_in(colour: tuple[int, int, int]) -> int:
        (top, bottom), = runs(where(pixels, colour).any(axis=1))
        start, stop = runs(where(pixels, colour).any(axis=0))[1]  # the detections panel
        return int(where(pixels[top:bottom, start:stop], DETECTION_COLOUR, 30).sum())

    assert red_in(CYAN) > 0  # the confident detection is drawn
    assert red_in(MAGENTA) == 0  # the one under the score threshold is not


def truth_box(pixels: np.ndarray, colour: tuple[int, int, int]) -> dict[str, int]:
    """Where the ground-truth box and its label lie in the truth panel of the image drawn in
    `colour`, in pixels from the panel's top left corner."""
    (top, bottom), = runs(where(pixels, colour).any(axis=1))
    start, stop = runs(where(pixels, colour).any(axis=0))[0]
    green = where(pixels[top:bottom, start:stop], GROUND_TRUTH_COLOUR, 40)
    rows = np.flatnonzero(green.sum(axis=1) >= 60)  # the box's horizontal edges
    columns = np.flatnonzero(green.sum(axis=0) >= 60)  # its vertical edges
    box_top = int(rows.min())
    label_rows = runs(green.any(axis=1))[0]  # the label sits on the box's top edge
    label_columns = np.flatnonzero(green[label_rows[0]:box_top - 2].any(axis=0))
    return {"left": int(columns.min()), "right": int(columns.max()), "top": box_top,
            "bottom": int(rows.max()), "label_height": box_top - int(label_rows[0]),
            "label_width": int(label_columns.max() - label_columns.min())}


def test_boxes_scale_with_their_image_and_labels_keep_one_size(tmp_path: Path) -> None:
    # the same box, relative to the image, on a 60 x 40 and on a 1200 x 800 image
    small, big = solid(60, 40, BLUE), solid(1200, 800, MAGENTA)
    truths = [[([15, 10, 45, 30], "rectangle")], [([300, 200, 900, 600], "rectangle")]]
    grid = detection_grid([small, big], truths, [[], []], tmp_path / "test_detections.png")
    pixels = read_png(grid)

    drawn_small, drawn_big = truth_box(pixels, BLUE), truth_box(pixels, MAGENTA)
    scale = PANEL_HEIGHT / 40  # the small image is drawn 6.4 times its size
    expected = {"left": 15 * scale, "right": 45 * scale, "top": 10 * scale,
                "bottom": 30 * scale}
    for side, position in expected.items():
        assert abs(drawn_small[side] - position) <= 3, (side, drawn_small)
        assert abs(drawn_big[side] - position) <= 3, (side, drawn_big)
    # labels are sized in display pixels: legible and alike on a 40 and an 800 px image
    assert drawn_small["label_height"] >= 10
    assert abs(drawn_small["label_height"] - drawn_big["label_height"]) <= 1
    assert abs(drawn_small["label_width"] - drawn_big["label_width"]) <= 1
