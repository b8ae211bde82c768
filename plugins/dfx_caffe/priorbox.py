"""caffe-ssd prior boxes, computed at import time (they depend only on shapes).

The arithmetic follows caffe-ssd's ``PriorBoxLayer::Forward_cpu``: steps,
centres and box sizes in float32, each corner ``(centre -+ size / 2.) / image``
in double, stored as float32; optional clipping to [0, 1]; then the variances.
"""

from __future__ import annotations

import numpy as np

from dfxsdk import ops

f32 = np.float32


def prior_boxes(op: ops.PriorBox, layer_hw: tuple[int, int], image_hw: tuple[int, int]) -> np.ndarray:
    """The (1, 2, H*W*num_priors*4) float32 output of a PriorBox layer.

    ``layer_hw`` is the feature map's (H, W), ``image_hw`` the image input's;
    ``op.img_h/img_w`` and ``op.step_h/step_w`` override them when non-zero.
    """
    lh, lw = layer_hw
    img_h, img_w = (op.img_h, op.img_w) if op.img_h and op.img_w else image_hw
    if op.step_h and op.step_w:
        step_h, step_w = f32(op.step_h), f32(op.step_w)
    else:
        step_h, step_w = f32(img_h) / f32(lh), f32(img_w) / f32(lw)
    offset = f32(op.offset)
    ratios = [f32(r) for r in op.expanded_aspect_ratios()]
    sizes: list[tuple[np.float32, np.float32]] = []   # (width, height) per prior, in order
    for s, min_size in enumerate(op.min_sizes):
        m = f32(min_size)
        sizes.append((m, m))
        if op.max_sizes:
            side = np.sqrt(m * f32(op.max_sizes[s]), dtype=f32)
            sizes.append((side, side))
        for ar in ratios:
            if abs(float(ar) - 1.0) < 1e-6:
                continue
            root = np.sqrt(ar, dtype=f32)
            sizes.append((m * root, m / root))
    widths = np.array([w for w, _ in sizes], dtype=f32)
    heights = np.array([h for _, h in sizes], dtype=f32)
    cx = (np.arange(lw, dtype=f32) + offset) * step_w          # float32, as in Caffe
    cy = (np.arange(lh, dtype=f32) + offset) * step_h
    cxg = np.broadcast_to(cx[None, :, None], (lh, lw, len(sizes))).astype(np.float64)
    cyg = np.broadcast_to(cy[:, None, None], (lh, lw, len(sizes))).astype(np.float64)
    half_w = widths.astype(np.float64) / 2.0
    half_h = heights.astype(np.float64) / 2.0
    boxes = np.stack([(cxg - half_w) / img_w, (cyg - half_h) / img_h,
                      (cxg + half_w) / img_w, (cyg + half_h) / img_h], axis=-1).astype(f32)
    boxes = boxes.reshape(-1)
    if op.clip:
        boxes = np.clip(boxes, f32(0), f32(1))
    variances = list(op.variances) or [0.1]
    if len(variances) == 1:
        var = np.full(boxes.shape, f32(variances[0]), dtype=f32)
    else:
        var = np.tile(np.asarray(variances, dtype=f32), boxes.size // 4)
    return np.stack([boxes, var]).reshape(1, 2, -1).astype(f32)
