"""Datasets: COCO-format splits on disk (`coco`), the synthetic default (`synthetic`),
augmentation (`augment`) and the one-time preparation a run or a search starts with (`prepare`).
"""
