"""Scores of a quantized network's outputs against the float model's (no labels needed).

- :func:`sqnr`: 10 log10(sum ref^2 / sum (ref - x)^2) in dB (inf when identical);
- :func:`fidelity`: ``100 * (1 - noise / signal)`` in percent, floored at 0: the share
  of the output's energy that is not quantization noise (99 % = 20 dB SQNR). It is a
  percentage, so a search margin in percentage points applies to it as to top-1;
- :func:`box_agreement`: for DetectionOutput rows (image, label, score, x0, y0, x1, y1),
  the Dice overlap ``2 * matched / (boxes in float + boxes quantized)`` in percent,
  where a quantized box matches an unmatched float box of the same image and label
  with IoU >= 0.5 (greedy, highest scores first); 100 when neither finds a box.
"""

from __future__ import annotations

import math

import numpy as np

from dfxsdk.graph import Model

#: IoU from which a box counts as found again.
IOU_MATCH = 0.5


def sqnr(ref: np.ndarray, x: np.ndarray) -> float:
    """Signal to quantization noise ratio of ``x`` against ``ref`` in dB."""
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(x, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return math.inf
    return -math.inf if signal == 0 else 10.0 * math.log10(signal / noise)


def fidelity(ref: np.ndarray, x: np.ndarray) -> float:
    """100 * (1 - noise / signal), floored at 0 (100: identical)."""
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(x, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return 100.0
    return 0.0 if signal == 0 else max(0.0, 100.0 * (1.0 - noise / signal))


def _boxes(det: np.ndarray) -> np.ndarray:
    rows = np.asarray(det, np.float64).reshape(-1, 7)
    return rows[rows[:, 0] >= 0]          # image id -1: no detection


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = np.clip(box[2] - box[0], 0, None) * np.clip(box[3] - box[1], 0, None)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_matches(ref: np.ndarray, x: np.ndarray) -> tuple[int, int, int]:
    """(matched, boxes in ``ref``, boxes in ``x``) for one run's DetectionOutput rows."""
    a, b = _boxes(ref), _boxes(x)
    used = np.zeros(len(a), bool)
    matched = 0
    for row in b[np.argsort(-b[:, 2], kind="stable")]:
        cand = np.flatnonzero((~used) & (a[:, 0] == row[0]) & (a[:, 1] == row[1]))
        if cand.size == 0:
            continue
        ious = _iou(row[3:7], a[cand, 3:7])
        best = int(np.argmax(ious))
        if ious[best] >= IOU_MATCH:
            used[cand[best]] = True
            matched += 1
    return matched, len(a), len(b)


def box_agreement(ref: np.ndarray | list[np.ndarray], x: np.ndarray | list[np.ndarray]) -> float:
    """Dice overlap (percent) of the detections ``x`` with the float model's ``ref``.

    Lists are runs (batches) whose image ids each start at 0; their counts add up.
    """
    pairs = zip(ref, x) if isinstance(ref, list) else [(ref, x)]
    matched = total = 0
    for r, v in pairs:
        m, na, nb = box_matches(r, v)
        matched += m
        total += na + nb
    return 100.0 if total == 0 else 100.0 * 2 * matched / total


def fast_backend(model: Model):
    """The native backend when it is installed and runs ``model``, else the numpy backend."""
    from dfxsdk.plugins import get_manager

    manager = get_manager()
    try:
        native = manager.backend("native")
    except Exception:  # noqa: BLE001 - not installed or not built: the reference backend does it all
        native = None
    if native is not None and not native.unsupported(model):
        return native
    return manager.backend("numpy")
