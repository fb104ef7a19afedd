"""Box geometry helpers on top of `torchvision.ops`: format changes and pixel mapping.

DETR predicts normalised (cx, cy, w, h) on the padded canvas the image processor made; the
diary's numbers (IoU, centre error in pixels) and COCO mAP need xyxy in *original* pixels.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_convert


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), any scale."""
    return box_convert(boxes, in_fmt="cxcywh", out_fmt="xyxy")


def to_original_pixels(
    normalised_cxcywh: torch.Tensor,
    canvas_size: torch.Tensor,
    resized_size: torch.Tensor,
    original_size: torch.Tensor,
) -> torch.Tensor:
    """Normalised canvas boxes -> xyxy pixels of the original image.

    `canvas_size` is the padded (h, w) the boxes are normalised by, `resized_size` the (h, w)
    the image occupies in it, `original_size` the (h, w) of the file on disk.
    """
    canvas_h, canvas_w = (float(v) for v in canvas_size)
    scale_y = float(original_size[0]) / float(resized_size[0])
    scale_x = float(original_size[1]) / float(resized_size[1])
    factor = normalised_cxcywh.new_tensor(
        [canvas_w * scale_x, canvas_h * scale_y, canvas_w * scale_x, canvas_h * scale_y]
    )
    return cxcywh_to_xyxy(normalised_cxcywh.float()) * factor


def box_centres(xyxy: torch.Tensor) -> torch.Tensor:
    """Centre (x, y) of each xyxy box."""
    return box_convert(xyxy, in_fmt="xyxy", out_fmt="cxcywh")[..., :2]
