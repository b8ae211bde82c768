"""SSD prior boxes and detection output with caffe-ssd semantics (float)."""

from __future__ import annotations

import math

import numpy as np

from dfxsdk import ops


def prior_box(op: ops.PriorBox, fmap_shape, image_shape) -> np.ndarray:
    """Prior boxes for a feature map: (1, 2, H*W*num_priors*4), boxes then variances."""
    h, w = fmap_shape[2], fmap_shape[3]
    img_h = op.img_h or image_shape[2]
    img_w = op.img_w or image_shape[3]
    step_h = op.step_h or img_h / h
    step_w = op.step_w or img_w / w
    sizes: list[tuple[float, float]] = []          # (box_w, box_h) per prior
    ratios = op.expanded_aspect_ratios()
    for i, mn in enumerate(op.min_sizes):
        sizes.append((mn, mn))
        if op.max_sizes:
            s = math.sqrt(mn * op.max_sizes[i])
            sizes.append((s, s))
        for ar in ratios:
            if abs(ar - 1.0) < 1e-6:
                continue
            sizes.append((mn * math.sqrt(ar), mn / math.sqrt(ar)))
    bw = np.array([s[0] for s in sizes])
    bh = np.array([s[1] for s in sizes])
    cy = (np.arange(h) + op.offset) * step_h
    cx = (np.arange(w) + op.offset) * step_w
    cy, cx = cy[:, None, None], cx[None, :, None]
    boxes = np.stack(np.broadcast_arrays((cx - bw / 2) / img_w, (cy - bh / 2) / img_h,
                                         (cx + bw / 2) / img_w, (cy + bh / 2) / img_h), axis=-1)
    boxes = boxes.reshape(-1)
    if op.clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    var = op.variances or [0.1]
    variances = np.tile(np.array(var if len(var) == 4 else var * 4, np.float64), boxes.size // 4)
    return np.stack([boxes, variances])[None].astype(np.float32)


def decode(op: ops.DetectionOutput, prior: np.ndarray, var: np.ndarray, loc: np.ndarray) -> np.ndarray:
    """Decode (P,4) loc offsets against (P,4) priors and variances (caffe-ssd DecodeBBox)."""
    v = np.ones_like(var) if op.variance_encoded_in_target else var
    pw = prior[:, 2] - prior[:, 0]
    ph = prior[:, 3] - prior[:, 1]
    if op.code_type == ops.CODE_CORNER:
        out = prior + v * loc
    elif op.code_type == ops.CODE_CORNER_SIZE:
        out = prior + v * loc * np.stack([pw, ph, pw, ph], axis=1)
    else:
        pcx = (prior[:, 0] + prior[:, 2]) / 2
        pcy = (prior[:, 1] + prior[:, 3]) / 2
        cx = v[:, 0] * loc[:, 0] * pw + pcx
        cy = v[:, 1] * loc[:, 1] * ph + pcy
        bw = np.exp(v[:, 2] * loc[:, 2]) * pw
        bh = np.exp(v[:, 3] * loc[:, 3]) * ph
        out = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return np.clip(out, 0.0, 1.0) if op.clip else out


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Jaccard overlap of one box with many (normalized coordinates, no +1)."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.where((ix1 > ix0) & (iy1 > iy0), (ix1 - ix0) * (iy1 - iy0), 0.0)

    def area(b):
        return np.where((b[..., 2] < b[..., 0]) | (b[..., 3] < b[..., 1]), 0.0,
                        (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))

    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(op: ops.DetectionOutput, boxes: np.ndarray, scores: np.ndarray) -> list[int]:
    """caffe-ssd ApplyNMSFast: threshold, stable sort, top_k, greedy adaptive NMS."""
    cand = np.nonzero(scores > op.confidence_threshold)[0]
    cand = cand[np.argsort(-scores[cand], kind="stable")]
    if op.top_k > -1:
        cand = cand[:op.top_k]
    keep: list[int] = []
    thr = op.nms_threshold
    for i in cand:
        if keep and np.any(iou(boxes[i], boxes[keep]) > thr):
            continue
        keep.append(int(i))
        if op.eta < 1 and thr > 0.5:
            thr *= op.eta
    return keep


def detection_output(op: ops.DetectionOutput, loc: np.ndarray, conf: np.ndarray,
                     priors: np.ndarray) -> np.ndarray:
    """(N, 1, capacity, 7) rows [image, label, score, xmin, ymin, xmax, ymax]; unused rows -1."""
    loc = np.asarray(loc, np.float64)
    conf = np.asarray(conf, np.float64)
    priors = np.asarray(priors, np.float64)
    n = loc.shape[0]
    num_priors = priors.shape[-1] // 4
    pri = priors.reshape(-1, 2, num_priors, 4)[0]
    loc_classes = 1 if op.share_location else op.num_classes
    cap = op.capacity(num_priors)
    out = np.full((n, 1, cap, 7), -1.0)
    loc = loc.reshape(n, num_priors, loc_classes, 4)
    conf = conf.reshape(n, num_priors, op.num_classes)
    for b in range(n):
        rows = []
        decoded = [decode(op, pri[0], pri[1], loc[b, :, j]) for j in range(loc_classes)]
        for c in range(op.num_classes):
            if c == op.background_label_id:
                continue
            boxes = decoded[0 if op.share_location else c]
            for i in nms(op, boxes, conf[b, :, c]):
                rows.append((-conf[b, i, c], c, i, boxes[i]))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        if op.keep_top_k > -1:
            rows = rows[:op.keep_top_k]
        for k, (neg, c, _, box) in enumerate(rows[:cap]):
            out[b, 0, k] = (b, c, -neg, *box)
    return out
