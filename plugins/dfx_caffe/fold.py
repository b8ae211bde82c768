"""Graph clean-up after conversion: BatchNorm/Scale folding and pruning.

A float ``Scale`` (from Caffe BatchNorm or Scale, channel axis 1) is folded
into the Conv2D or FullyConnected that produces its input when that output is
read by the Scale alone: W'[o] = W[o] * s[o], b' = b * s + t, and the result
keeps the producer's tensor name. Two Scale layers in a row merge the same
way. Anything else stays a standalone Scale.
"""

from __future__ import annotations

import numpy as np

from dfxsdk import ops
from dfxsdk.graph import Layer, Model


def _float_const(model: Model, name: str | None) -> np.ndarray | None:
    if name is None:
        return None
    t = model.tensors[name]
    if not t.is_constant or t.qformat is not None:
        return None
    return np.asarray(t.data, dtype=np.float64)


def _channel_affine(model: Model, layer: Layer) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, bias) of a per-channel float Scale on axis 1, else None."""
    if not isinstance(layer.op, ops.Scale) or layer.op.axis != 1 or layer.op.num_axes != 1:
        return None
    s = _float_const(model, layer.inputs[1])
    if s is None:
        return None
    bias_name = layer.inputs[2] if len(layer.inputs) > 2 else None
    t = _float_const(model, bias_name) if bias_name else np.zeros_like(s)
    if t is None:
        return None
    return s.reshape(-1), t.reshape(-1)


def fold_scales(model: Model) -> int:
    """Fold Scale layers into producers; return how many were folded."""
    folded = 0
    changed = True
    while changed:
        changed = False
        for layer in list(model.layers):
            affine = _channel_affine(model, layer)
            if affine is None:
                continue
            src = layer.inputs[0]
            prod = model.producer(src)
            if prod is None or src in model.outputs or [c.name for c in model.consumers(src)] != [layer.name]:
                continue
            if model.tensors[src].qformat is not None or model.tensors[layer.outputs[0]].qformat is not None:
                continue
            if _merge(model, prod, layer, *affine):
                folded += 1
                changed = True
                break
    prune(model)
    return folded


def _merge(model: Model, prod: Layer, scale_layer: Layer, s: np.ndarray, t: np.ndarray) -> bool:
    if isinstance(prod.op, (ops.Conv2D, ops.FullyConnected)):
        if isinstance(prod.op, ops.FullyConnected) and len(model.tensors[prod.outputs[0]].shape) != 2:
            return False
        w = _float_const(model, prod.inputs[1])
        bias_name = prod.inputs[2] if len(prod.inputs) > 2 else None
        b = _float_const(model, bias_name) if bias_name else np.zeros(w.shape[0])
        if w is None or b is None or w.shape[0] != s.size:
            return False
        new_w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        new_b = b.reshape(-1) * s + t
        _set(model, prod.inputs[1], new_w)
        if bias_name:
            _set(model, bias_name, new_b)
        else:
            from dfxsdk.graph import Tensor
            name = f"{prod.name}/bias"
            k = 2
            while name in model.tensors:
                name, k = f"{prod.name}/bias#{k}", k + 1
            model.add_tensor(Tensor(name, (s.size,), _data=new_b.astype(np.float32)))
            prod.inputs = prod.inputs[:2] + [name]
    elif _channel_affine(model, prod) is not None:
        s0, t0 = _channel_affine(model, prod)
        if s0.size != s.size:
            return False
        _set(model, prod.inputs[1], (s0 * s).reshape(model.tensors[prod.inputs[1]].shape))
        new_t = t0 * s + t
        if len(prod.inputs) > 2 and prod.inputs[2]:
            _set(model, prod.inputs[2], new_t.reshape(model.tensors[prod.inputs[2]].shape))
        else:
            from dfxsdk.graph import Tensor
            name = f"{prod.name}/bias"
            model.add_tensor(Tensor(name, (s.size,), _data=new_t.astype(np.float32)))
            prod.inputs = prod.inputs[:2] + [name]
    else:
        return False
    keep, gone = prod.outputs[0], scale_layer.outputs[0]   # the producer's tensor name survives
    model.layers.remove(scale_layer)
    for layer in model.layers:
        layer.inputs = [keep if n == gone else n for n in layer.inputs]
    model.outputs = [keep if n == gone else n for n in model.outputs]
    del model.tensors[gone]
    return True


def _set(model: Model, name: str, value: np.ndarray) -> None:
    t = model.tensors[name]
    t.data = np.ascontiguousarray(value, dtype=np.float32).reshape(t.shape)


def prune(model: Model) -> None:
    """Drop tensors no layer, input or output refers to."""
    used = set(model.inputs) | set(model.outputs)
    for layer in model.layers:
        used.update(n for n in layer.inputs if n is not None)
        used.update(layer.outputs)
    for name in [n for n in model.tensors if n not in used]:
        del model.tensors[name]
