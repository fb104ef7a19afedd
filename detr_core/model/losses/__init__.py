"""DETR-family set losses with a choice of box IoU term: GIoU (stock), DIoU or CIoU.

The IoU variant appears twice in each of these losses and a DIoU/CIoU run changes both: the
Hungarian matcher's cost and the box loss of the matched pairs (auxiliary decoder layers,
encoder proposals and denoising groups included). Both come from `torchvision.ops`. The term is
reported as `loss_iou` (`loss_iou_0`, `loss_iou_aux_0`, `loss_iou_dn_1`, ...) whatever the
variant and weighted as upstream weights GIoU, so runs with different variants stay
comparable; with `giou` the result equals transformers' loss (tested per family).

`iou_loss_function(model_type, iou_variant)` is what a model gets as its `loss_function`, one
per instance: transformers' modules are never patched (Ray reuses a worker process for trials
with other variants). One module per loss family (`detr`, `deformable`, `rt_detr`, `d_fine`),
each subclassing transformers' matcher and criterion and overriding only what holds the IoU;
`functions` maps `config.model_type` to the family; `common` holds what they share.
"""
