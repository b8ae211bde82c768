"""Per-layer conversion: one function per supported Caffe layer type.

Each converter reads its bottoms through the :class:`~.build.Builder`
(current tensors of the blobs), adds zero or more dfxsdk layers, and binds its
tops. Output formats of layers with integer inputs come from
:mod:`dfxsdk.propagate`; Ristretto layers use their own formats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dfxsdk import fixedpoint, minifloat, ops, propagate
from dfxsdk.errors import DfxImportError, DfxUnsupportedError
from dfxsdk.formats import FL_MAX, QFormat, Rounding

from . import priorbox, ristretto
from ._proto import caffe_pb2 as pb
from .build import BlobSpec, Builder, Converter

LP = pb.LayerParameter


# -- helpers -----------------------------------------------------------------

def _one_bottom(lp: LP, n_tops: int | None = 1) -> None:
    if len(lp.bottom) != 1 or (n_tops is not None and len(lp.top) != n_tops):
        raise DfxImportError(f"{lp.type} needs 1 bottom and {n_tops} top(s), has {len(lp.bottom)} and "
                             f"{len(lp.top)}", layer=lp.name)


def emit(b: Builder, lp: LP, name: str, op: ops.Op, inputs: Sequence[str | None],
         tops: Sequence[str] | None = None, formats: Sequence[QFormat | None] | None = None,
         shapes: Sequence[tuple[int, ...]] | None = None) -> list[str]:
    """Add ``op`` reading ``inputs``; bind ``tops`` (default: the layer's) to its outputs.

    Without explicit ``formats`` the outputs get :func:`dfxsdk.propagate.output_formats`.
    All-constant inputs of layout operators are folded into a constant.
    """
    tops = list(lp.top if tops is None else tops)
    if shapes is None:
        shapes = b.infer(op, inputs, name)
    if formats is None:
        in_fmts = [None if n is None else b.model.tensors[n].qformat for n in inputs]
        formats = propagate.output_formats(op, in_fmts, len(tops))
    folded = _fold_constant(b, op, inputs, shapes)
    if folded is not None:
        for top, arr in zip(tops, folded):
            b.bind(top, b.constant(top, arr))
        return [b.bound[t] for t in tops]
    return b.append(name, op, inputs, tops, shapes=shapes, formats=formats, caffe_type=lp.type)


def _fold_constant(b: Builder, op: ops.Op, inputs, shapes) -> list[np.ndarray] | None:
    tensors = [b.model.tensors[n] for n in inputs if n is not None]
    if not tensors or not all(t.is_constant and t.qformat is None for t in tensors):
        return None
    arrays = [np.asarray(t.data) for t in tensors]
    if isinstance(op, ops.Concat):
        return [np.concatenate(arrays, axis=op.axis)]
    if isinstance(op, (ops.Flatten, ops.Reshape)):
        return [arrays[0].reshape(shapes[0])]
    if isinstance(op, ops.Permute):
        return [np.transpose(arrays[0], op.order)]
    return None


def _pair(values: Sequence[int], h: int | None, w: int | None, default: int, what: str, layer: str) -> tuple[int, int]:
    if h is not None and w is not None:
        return int(h), int(w)
    vals = list(values)
    if not vals:
        return default, default
    if len(vals) == 1:
        return int(vals[0]), int(vals[0])
    if len(vals) == 2:
        return int(vals[0]), int(vals[1])
    raise DfxUnsupportedError(f"{len(vals)}-D {what} is not supported (2-D only)", layer=layer)


def _geometry(cp: pb.ConvolutionParameter, layer: str) -> dict:
    def opt(field: str):
        return getattr(cp, field) if cp.HasField(field) else None
    kh, kw = _pair(cp.kernel_size, opt("kernel_h"), opt("kernel_w"), 0, "kernel", layer)
    sh, sw = _pair(cp.stride, opt("stride_h"), opt("stride_w"), 1, "stride", layer)
    ph, pw = _pair(cp.pad, opt("pad_h"), opt("pad_w"), 0, "pad", layer)
    dh, dw = _pair(cp.dilation, None, None, 1, "dilation", layer)
    if kh < 1 or kw < 1:
        raise DfxImportError("kernel size missing or 0", layer=layer, field="convolution_param.kernel_size")
    if cp.axis != 1:
        raise DfxUnsupportedError(f"convolution axis {cp.axis} is not supported (only 1)", layer=layer)
    return dict(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_top=ph, pad_bottom=ph,
                pad_left=pw, pad_right=pw, dilation_h=dh, dilation_w=dw)


def _weights(b: Builder, lp: LP, name: str, spec: ristretto.Spec | None,
             arrays: list[np.ndarray], roles: Sequence[str]) -> list[str]:
    """Constants for parameter blobs: float, or quantized with Ristretto's params format."""
    out = []
    for arr, role in zip(arrays, roles):
        if spec is None or (role == "bias" and spec.power_of_two is not None):
            out.append(b.constant(f"{name}/{role}", arr))
        elif spec.minifloat is not None:
            out.append(b.constant(f"{name}/{role}", minifloat.trim(arr, spec.minifloat.mant_bits,
                                                                   spec.minifloat.exp_bits)))
        elif role == "bias":
            out.append(b.constant(f"{name}/{role}", arr, spec.params, codes=fixedpoint.quantize(arr, spec.params)))
        else:
            out.append(b.constant(f"{name}/{role}", arr, spec.params, codes=spec.weight_codes(arr)))
    return out


def _conv_like(b: Builder, lp: LP, name: str) -> None:
    """Convolution, Deconvolution and InnerProduct, float or Ristretto."""
    _one_bottom(lp)
    spec = ristretto.spec_for(lp) if lp.type in ristretto.RISTRETTO_TYPES else None
    base = ristretto.RISTRETTO_TYPES.get(lp.type, lp.type)
    if spec is not None:
        x = ristretto.quantize_input(b, lp.bottom[0], spec, name)
    else:
        x = b.current(lp.bottom[0], name).name
    xs = b.model.tensors[x].shape
    if base == "InnerProduct":
        ip = lp.inner_product_param
        axis = ip.axis + len(xs) if ip.axis < 0 else ip.axis
        if not 1 <= axis < len(xs) + 1:
            raise DfxImportError(f"axis {ip.axis} is out of range for input {xs}", layer=lp.name)
        k = math.prod(xs[axis:])
        w_shape = (k, ip.num_output) if ip.transpose else (ip.num_output, k)
        expected = [BlobSpec("weights", w_shape)] + ([BlobSpec("bias", (ip.num_output,))] if ip.bias_term else [])
        arrays = b.params(lp.name, expected)
        if ip.transpose:
            arrays[0] = np.ascontiguousarray(arrays[0].T)
        op: ops.Op = ops.FullyConnected(axis=axis)
    else:
        cp = lp.convolution_param
        geo = _geometry(cp, lp.name)
        if len(xs) != 4:
            raise DfxImportError(f"input {xs} is not N,C,H,W", layer=lp.name)
        c, g, o = xs[1], cp.group, cp.num_output
        if g < 1 or c % g or o % g:
            raise DfxImportError(f"group {g} does not divide {c} input and {o} output channels", layer=lp.name)
        kh, kw = geo["kernel_h"], geo["kernel_w"]
        w_shape = (o, c // g, kh, kw) if base == "Convolution" else (c, o // g, kh, kw)
        expected = [BlobSpec("weights", w_shape)] + ([BlobSpec("bias", (o,))] if cp.bias_term else [])
        arrays = b.params(lp.name, expected)
        op = ops.Conv2D(group=g, **geo) if base == "Convolution" else ops.Deconv2D(group=g, **geo)
    consts = _weights(b, lp, name, spec, arrays, [e.role for e in expected])
    inputs = [x, consts[0], consts[1] if len(consts) > 1 else None]
    emit(b, lp, name, op, inputs, formats=[spec.output if spec else None])
    if spec is not None and spec.minifloat is not None:
        ristretto.trim(b, lp.top[0], spec.minifloat, f"{name}/trim_out", name)


def _pooling(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    pp = lp.pooling_param
    if pp.pool == pb.PoolingParameter.STOCHASTIC:
        raise DfxUnsupportedError("STOCHASTIC pooling is not supported", layer=lp.name, field="pooling_param.pool")
    x = b.current(lp.bottom[0], lp.name)
    if len(x.shape) != 4:
        raise DfxImportError(f"input {x.shape} is not N,C,H,W", layer=lp.name)

    def opt(field: str):
        return getattr(pp, field) if pp.HasField(field) else None
    if pp.global_pooling:
        kh, kw = x.shape[2], x.shape[3]
        sh = sw = 1
        ph = pw = 0
    else:
        kh, kw = _pair([pp.kernel_size] if pp.HasField("kernel_size") else [], opt("kernel_h"), opt("kernel_w"),
                       0, "kernel", lp.name)
        if kh < 1 or kw < 1:
            raise DfxImportError("kernel size missing or 0", layer=lp.name, field="pooling_param.kernel_size")
        sh, sw = _pair([pp.stride], opt("stride_h"), opt("stride_w"), 1, "stride", lp.name)
        ph, pw = _pair([pp.pad], opt("pad_h"), opt("pad_w"), 0, "pad", lp.name)
    op = ops.Pool2D(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_top=ph, pad_bottom=ph,
                    pad_left=pw, pad_right=pw,
                    type=ops.POOL_MAX if pp.pool == pb.PoolingParameter.MAX else ops.POOL_AVERAGE,
                    global_=bool(pp.global_pooling), ceil_mode=pp.round_mode == pb.PoolingParameter.CEIL)
    emit(b, lp, name, op, [x.name])


def slope_constant(b: Builder, name: str, values: np.ndarray, x_fmt: QFormat | None) -> tuple[str, bool]:
    """The slope tensor of a (leaky/parametric) ReLU and whether it is exact.

    Float input: a float slope. Integer input: int16 codes; the fl is the
    smallest that represents every slope exactly if one exists within 16
    bits, otherwise the largest that still fits (most precise).
    """
    values = np.asarray(values, dtype=np.float32)
    if x_fmt is None:
        return b.constant(f"{name}/slope", values), True
    ds = [fixedpoint.dyadic(float(v), max_exp=FL_MAX) for v in values.reshape(-1)]
    if all(d is not None for d in ds):
        fl = max(e for _, e in ds)
        fmt = QFormat(16, fl, Rounding.HALF_AWAY_FROM_ZERO)
        codes = fixedpoint.quantize(values, fmt)
        if np.array_equal(fixedpoint.dequantize(codes, fmt, np.float64), values.astype(np.float64)):
            bw = propagate.width_for_range(int(codes.min()), int(codes.max()))
            fmt = QFormat(max(bw, 2), fl, Rounding.HALF_AWAY_FROM_ZERO)
            return b.constant(f"{name}/slope", values, fmt, codes=codes), True
    peak = float(np.max(np.abs(values))) or 1.0
    fl = 15 - max(0, math.ceil(math.log2(peak)))
    while fl > -64 and peak * 2.0 ** fl > 32767:
        fl -= 1
    fmt = QFormat(16, min(fl, 64), Rounding.HALF_AWAY_FROM_ZERO)
    return b.constant(f"{name}/slope", values, fmt, codes=fixedpoint.quantize(values, fmt)), False


def _prelu_from(b: Builder, lp: LP, name: str, slopes: np.ndarray) -> None:
    x = b.current(lp.bottom[0], lp.name)
    slope, exact = slope_constant(b, name, slopes, x.qformat)
    op = ops.PRelu()
    fmts = None if exact else [None]
    emit(b, lp, name, op, [x.name, slope], formats=fmts)


def _relu(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    slope = lp.relu_param.negative_slope
    if slope == 0:
        emit(b, lp, name, ops.Relu(), [b.current(lp.bottom[0], lp.name).name])
    else:
        _prelu_from(b, lp, name, np.array([slope], np.float32))


def _prelu(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    x = b.current(lp.bottom[0], lp.name)
    n = 1 if lp.prelu_param.channel_shared else x.shape[1]
    (slopes,) = b.params(lp.name, [BlobSpec("slope", (n,))])
    _prelu_from(b, lp, name, slopes)


def _simple(op_cls):
    def convert(b: Builder, lp: LP, name: str) -> None:
        _one_bottom(lp)
        emit(b, lp, name, op_cls(), [b.current(lp.bottom[0], lp.name).name])
    return convert


def _lrn(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    p = lp.lrn_param
    within = p.norm_region == pb.LRNParameter.WITHIN_CHANNEL
    # Caffe's WITHIN_CHANNEL LRN ignores k and always adds 1 (spec/arithmetic.md).
    op = ops.Lrn(local_size=p.local_size, alpha=p.alpha, beta=p.beta, k=1.0 if within else p.k,
                 region=ops.LRN_WITHIN_CHANNEL if within else ops.LRN_ACROSS_CHANNELS)
    emit(b, lp, name, op, [b.current(lp.bottom[0], lp.name).name])


def _concat(b: Builder, lp: LP, name: str) -> None:
    p = lp.concat_param
    axis = p.axis if p.HasField("axis") or not p.HasField("concat_dim") else p.concat_dim
    inputs = [b.current(x, lp.name).name for x in lp.bottom]
    rank = len(b.model.tensors[inputs[0]].shape)
    emit(b, lp, name, ops.Concat(axis=axis + rank if axis < 0 else axis), inputs)


_ELTWISE = {pb.EltwiseParameter.SUM: ops.ELTWISE_SUM, pb.EltwiseParameter.PROD: ops.ELTWISE_PROD,
            pb.EltwiseParameter.MAX: ops.ELTWISE_MAX}


def _eltwise(b: Builder, lp: LP, name: str) -> None:
    p = lp.eltwise_param
    coeff = [float(c) for c in p.coeff]
    if coeff and p.operation != pb.EltwiseParameter.SUM:
        raise DfxImportError("coeff is only allowed with operation SUM", layer=lp.name, field="eltwise_param.coeff")
    if coeff and all(c == 1.0 for c in coeff):
        coeff = []
    inputs = [b.current(x, lp.name).name for x in lp.bottom]
    emit(b, lp, name, ops.Eltwise(operation=_ELTWISE[p.operation], coefficients=coeff), inputs)


def _softmax(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    x = b.current(lp.bottom[0], lp.name)
    axis = lp.softmax_param.axis
    emit(b, lp, name, ops.Softmax(axis=axis + len(x.shape) if axis < 0 else axis), [x.name])


def _identity(b: Builder, lp: LP, name: str) -> None:
    """Dropout (identity in TEST) and Split: tops share the bottom's tensor."""
    if len(lp.bottom) != 1:
        raise DfxImportError(f"{lp.type} needs 1 bottom", layer=lp.name)
    t = b.current(lp.bottom[0], lp.name).name
    for top in lp.top:
        b.bind(top, t)


def _batch_norm(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    x = b.current(lp.bottom[0], lp.name)
    c = x.shape[1]
    mean, var, factor = b.params(lp.name, [BlobSpec("mean", (c,)), BlobSpec("variance", (c,)),
                                           BlobSpec("scale_factor", (1,))])
    f = 0.0 if float(factor.reshape(-1)[0]) == 0 else 1.0 / float(factor.reshape(-1)[0])
    m, v = mean.astype(np.float64) * f, var.astype(np.float64) * f
    scale = 1.0 / np.sqrt(v + float(lp.batch_norm_param.eps))
    bias = -m * scale
    s = b.constant(f"{name}/scale", scale.astype(np.float32))
    t = b.constant(f"{name}/bias", bias.astype(np.float32))
    emit(b, lp, name, ops.Scale(axis=1, num_axes=1), [x.name, s, t])


def _scale(b: Builder, lp: LP, name: str) -> None:
    p = lp.scale_param
    x = b.current(lp.bottom[0], lp.name)
    axis = p.axis + len(x.shape) if p.axis < 0 else p.axis
    num_axes = len(x.shape) - axis if p.num_axes == -1 else p.num_axes
    shape = tuple(x.shape[axis:axis + num_axes])
    expected = []
    if len(lp.bottom) == 1:
        expected.append(BlobSpec("scale", shape))
    elif len(lp.bottom) != 2:
        raise DfxImportError("Scale needs 1 or 2 bottoms", layer=lp.name)
    if p.bias_term:
        expected.append(BlobSpec("bias", shape))
    arrays = b.params(lp.name, expected) if expected else []
    if len(lp.bottom) == 2:
        s = b.current(lp.bottom[1], lp.name).name
    else:
        s = b.constant(f"{name}/scale", arrays.pop(0))
    bias = b.constant(f"{name}/bias", arrays[0]) if p.bias_term else None
    emit(b, lp, name, ops.Scale(axis=axis, num_axes=num_axes), [x.name, s, bias])


def _flatten(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    p = lp.flatten_param
    emit(b, lp, name, ops.Flatten(axis=p.axis, end_axis=p.end_axis), [b.current(lp.bottom[0], lp.name).name])


def reshape_target(shape: Sequence[int], p: pb.ReshapeParameter, layer: str) -> tuple[int, ...]:
    """Caffe's Reshape output shape (0 copies a dimension, one -1 is inferred)."""
    rank = len(shape)
    axis = p.axis + rank + 1 if p.axis < 0 else p.axis
    end = rank if p.num_axes == -1 else axis + p.num_axes
    if not 0 <= axis <= end <= rank:
        raise DfxImportError(f"axis {p.axis} / num_axes {p.num_axes} out of range for {tuple(shape)}", layer=layer)
    dims = []
    for i, d in enumerate(p.shape.dim):
        if d == 0:
            if axis + i >= rank:
                raise DfxImportError(f"dim {i} is 0 but the input has no axis {axis + i}", layer=layer)
            dims.append(shape[axis + i])
        else:
            dims.append(int(d))
    out = list(shape[:axis]) + dims + list(shape[end:])
    total = math.prod(shape)
    if out.count(-1) > 1:
        raise DfxImportError("more than one -1 in reshape_param.shape", layer=layer)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            raise DfxImportError(f"cannot reshape {tuple(shape)} to {tuple(out)}", layer=layer)
        out[out.index(-1)] = total // known
    if math.prod(out) != total or any(d < 0 for d in out):
        raise DfxImportError(f"cannot reshape {tuple(shape)} to {tuple(out)}", layer=layer)
    return tuple(out)


def _reshape(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    x = b.current(lp.bottom[0], lp.name)
    target = reshape_target(x.shape, lp.reshape_param, lp.name)
    emit(b, lp, name, ops.Reshape(), [x.name], shapes=[target])


def _permute(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    x = b.current(lp.bottom[0], lp.name)
    order = [int(o) for o in lp.permute_param.order]
    order += [i for i in range(len(x.shape)) if i not in order]
    emit(b, lp, name, ops.Permute(order=order), [x.name])


def _slice(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp, None)
    p = lp.slice_param
    x = b.current(lp.bottom[0], lp.name)
    axis = p.axis if p.HasField("axis") or not p.HasField("slice_dim") else p.slice_dim
    axis = axis + len(x.shape) if axis < 0 else axis
    points = [int(s) for s in p.slice_point]
    if not points:
        n = len(lp.top)
        if x.shape[axis] % n:
            raise DfxImportError(f"axis {axis} of {x.shape} does not split into {n} equal parts", layer=lp.name)
        points = [x.shape[axis] // n * i for i in range(1, n)]
    if len(points) != len(lp.top) - 1:
        raise DfxImportError(f"{len(points)} slice points for {len(lp.top)} tops", layer=lp.name)
    emit(b, lp, name, ops.Slice(axis=axis, points=points), [x.name])


def _power(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    p = lp.power_param
    emit(b, lp, name, ops.Power(power=p.power, scale=p.scale, shift=p.shift), [b.current(lp.bottom[0], lp.name).name])


def _normalize(b: Builder, lp: LP, name: str) -> None:
    _one_bottom(lp)
    p = lp.norm_param
    x = b.current(lp.bottom[0], lp.name)
    n = 1 if p.channel_shared else x.shape[1]
    (scale,) = b.params(lp.name, [BlobSpec("scale", (n,))])
    s = b.constant(f"{name}/scale", scale.reshape(n))
    op = ops.Normalize(across_spatial=p.across_spatial, channel_shared=p.channel_shared, eps=p.eps)
    emit(b, lp, name, op, [x.name, s])


def _prior_box(b: Builder, lp: LP, name: str) -> None:
    if len(lp.bottom) != 2 or len(lp.top) != 1:
        raise DfxImportError("PriorBox needs 2 bottoms (feature map, image) and 1 top", layer=lp.name)
    p = lp.prior_box_param
    fmap = b.current(lp.bottom[0], lp.name)
    image = b.current(lp.bottom[1], lp.name)
    img_h = p.img_h if p.HasField("img_h") else p.img_size
    img_w = p.img_w if p.HasField("img_w") else p.img_size
    step_h = p.step_h if p.HasField("step_h") else p.step
    step_w = p.step_w if p.HasField("step_w") else p.step
    op = ops.PriorBox(min_sizes=list(p.min_size), max_sizes=list(p.max_size), aspect_ratios=list(p.aspect_ratio),
                      flip=p.flip, clip=p.clip, variances=list(p.variance), img_h=img_h, img_w=img_w,
                      step_h=step_h, step_w=step_w, offset=p.offset)
    (shape,) = b.infer(op, [fmap.name, image.name], lp.name)
    boxes = priorbox.prior_boxes(op, fmap.shape[2:4], image.shape[2:4])
    assert boxes.shape == shape
    b.bind(lp.top[0], b.constant(lp.top[0], boxes))


def _detection_output(b: Builder, lp: LP, name: str) -> None:
    if len(lp.bottom) != 3:
        raise DfxImportError("DetectionOutput needs 3 bottoms (loc, conf, priors)", layer=lp.name)
    p = lp.detection_output_param
    clip = (b.extras.get(("DetectionOutputParameter", "clip")) or "").lower() in ("1", "true", "t")
    op = ops.DetectionOutput(num_classes=p.num_classes, share_location=p.share_location,
                             background_label_id=p.background_label_id,
                             nms_threshold=p.nms_param.nms_threshold, top_k=p.nms_param.top_k
                             if p.nms_param.HasField("top_k") else -1, eta=p.nms_param.eta,
                             keep_top_k=p.keep_top_k, confidence_threshold=p.confidence_threshold,
                             code_type=int(p.code_type), variance_encoded_in_target=p.variance_encoded_in_target,
                             clip=clip)
    emit(b, lp, name, op, [b.current(x, lp.name).name for x in lp.bottom])


CONVERTERS: dict[str, Converter] = {
    "Convolution": _conv_like, "Deconvolution": _conv_like, "InnerProduct": _conv_like,
    "ConvolutionRistretto": _conv_like, "DeconvolutionRistretto": _conv_like, "FcRistretto": _conv_like,
    "LRNRistretto": lambda b, lp, name: ristretto.spec_for(lp),
    "Pooling": _pooling, "ReLU": _relu, "PReLU": _prelu,
    "Sigmoid": _simple(ops.Sigmoid), "TanH": _simple(ops.Tanh), "LRN": _lrn,
    "Concat": _concat, "Eltwise": _eltwise, "Softmax": _softmax,
    "Dropout": _identity, "Split": _identity,
    "BatchNorm": _batch_norm, "Scale": _scale,
    "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute, "Slice": _slice, "Power": _power,
    "Normalize": _normalize, "PriorBox": _prior_box, "DetectionOutput": _detection_output,
}
