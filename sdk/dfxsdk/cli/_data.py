"""Input data for ``dfxsdk run`` and ``dfxsdk eval``: arrays, images, labelled sets.

Readers for .npy/.npz, images (through :mod:`._images`), CSV rows of pixels
with the label last (optionally gzip-compressed), and atomic .npz writing.
Every failure is a DfxInputError that names the file.
"""

from __future__ import annotations

import gzip
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, check_input_file
from ..errors import DfxInputError
from ..graph import Model
from ._images import IMAGE_EXTENSIONS, read_image

__all__ = ["IMAGE_EXTENSIONS", "read_image"]  # re-exported for the commands

def images_to_batch(images: list[np.ndarray], model: Model, input_name: str, paths) -> np.ndarray:
    """Stack H,W,C images into the model's N,C,H,W layout and channel order."""
    shape = model.tensors[input_name].shape
    pre = model.preprocessing.get(input_name)
    out = []
    for img, path in zip(images, paths):
        if len(shape) == 4 and img.shape[:2] != tuple(shape[2:]):
            raise DfxInputError(f"image is {img.shape[1]}x{img.shape[0]}, the model wants "
                                f"{shape[3]}x{shape[2]}", file=str(path))
        c = shape[1] if len(shape) == 4 else 1
        if img.shape[2] != c:
            if c == 1:
                img = np.round(img[:, :, :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[:, :, None]
            elif c == 3 and img.shape[2] == 1:
                img = np.repeat(img, 3, axis=2)  # a gray image for a color network: R = G = B
            else:
                raise DfxInputError(f"image has {img.shape[2]} channel(s), the model wants {c}", file=str(path))
        if pre is not None and pre.channel_order == "BGR":
            img = img[:, :, ::-1]
        out.append(img.transpose(2, 0, 1))
    return np.stack(out).reshape((len(out),) + tuple(shape[1:]))


# -- arrays ----------------------------------------------------------------------------

def as_batch(x: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Accept a batch (N, ...), one sample (...) or, for one channel, N,H,W / H,W."""
    inner = tuple(shape[1:])
    if x.shape[1:] == inner:
        return x
    if x.shape == inner:
        return x[None]
    if len(inner) == 3 and inner[0] == 1 and x.shape[-2:] == inner[1:] and x.ndim in (2, 3):
        return x.reshape((-1,) + inner)
    raise DfxInputError(f"array of shape {x.shape} does not fit the input shape (N,{','.join(map(str, inner))})",
                        file=where)


def preprocess(model: Model, name: str, raw: np.ndarray) -> np.ndarray:
    """Apply the model's stored preprocessing of input ``name`` (if any)."""
    pre = model.preprocessing.get(name)
    return pre.apply(raw) if pre is not None else np.asarray(raw, np.float32)


def load_array_file(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """The array of an .npy, or the arrays of an .npz; DfxInputError for anything else."""
    expected = "an .npz archive" if path.suffix.lower() == ".npz" else "an .npy array"
    check_input_file(path, expected)
    if path.stat().st_size == 0:
        raise DfxInputError(f"file is empty, expected {expected}", file=str(path))
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DfxInputError(f"cannot read {expected} ({exc})", file=str(path)) from None


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz so that an existing file is replaced whole or not at all."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


# -- labelled data sets --------------------------------------------------------------------

@dataclass
class Dataset:
    """Raw samples (N, ...) in the model's input layout and integer labels (N,; None: unlabelled)."""

    x: np.ndarray
    y: np.ndarray | None
    source: str


def load_dataset(data: str, labels: str | None, model: Model, input_name: str, *,
                 need_labels: bool = True) -> Dataset:
    """Read --data (CSV[.gz], .npz with x and y, or a folder of images with --labels).

    With ``need_labels=False`` also an .npy (samples only), an .npz without y and an
    image folder without --labels (the dataset's ``y`` is then None).
    """
    path = Path(data)
    shape = model.tensors[input_name].shape
    if not path.exists():
        raise DfxInputError("no such file or folder", file=data)
    if path.is_dir():
        if labels is None and not need_labels:
            return _load_unlabelled_folder(path, model, input_name)
        return _load_image_folder(path, labels, model, input_name)
    name = path.name.lower()
    if name.endswith(".npy") and not need_labels:
        arr = load_array_file(path)
        if isinstance(arr, dict):
            raise DfxInputError("expected one array of samples", file=data)
        return Dataset(as_batch(arr, shape, data), None, data)
    if name.endswith((".csv", ".csv.gz")):
        return _load_csv(path, shape)
    if name.endswith(".npz"):
        arrays = load_array_file(path)
        xk = next((k for k in ("x", "data", "images") if k in arrays), None)
        yk = next((k for k in ("y", "labels", "label") if k in arrays), None)
        if xk is not None and yk is None and not need_labels:
            return Dataset(as_batch(arrays[xk], shape, data), None, data)
        if xk is None or yk is None:
            raise DfxInputError(f"an .npz data set needs arrays 'x' and 'y' (has {sorted(arrays)})", file=data)
        x = as_batch(arrays[xk], shape, data)
        return Dataset(x, _labels(arrays[yk], len(x), data), data)
    raise DfxInputError("unknown data format: give a .csv[.gz], an .npz with x and y, "
                        "or a folder of images with --labels", file=data)


def _load_unlabelled_folder(folder: Path, model: Model, input_name: str) -> Dataset:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DfxInputError("no images in the folder", file=str(folder))
    x = images_to_batch([read_image(p) for p in files], model, input_name, files)
    return Dataset(x, None, str(folder))


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise DfxInputError(f"{len(y)} labels for {n} samples", file=where)
    if y.size and (not np.all(np.mod(y, 1) == 0) or y.min() < 0):
        raise DfxInputError("labels must be non-negative integers", file=where)
    return y.astype(np.int64)


def _load_csv(path: Path, shape: tuple[int, ...]) -> Dataset:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise DfxInputError(f"cannot read CSV ({exc})", file=str(path)) from None
    width = int(np.prod(shape[1:]))
    if table.shape[1] != width + 1:
        raise DfxInputError(f"CSV rows have {table.shape[1]} values; the model's input needs {width} "
                            "pixels plus the label last", file=str(path))
    return Dataset(table[:, :-1].reshape((-1,) + tuple(shape[1:])), _labels(table[:, -1], len(table), str(path)),
                   str(path))


def _load_image_folder(folder: Path, labels: str | None, model: Model, input_name: str) -> Dataset:
    if labels is None:
        raise DfxInputError("a folder of images needs --labels FILE (lines 'name label', or one label "
                            "per line for the images in sorted order)", file=str(folder))
    try:
        lines = [ln.split() for ln in Path(labels).read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise DfxInputError(f"cannot read labels ({exc.strerror})", file=labels) from None
    try:
        if all(len(p) >= 2 for p in lines):
            pairs = [(folder / p[0], int(p[-1])) for p in lines]
        else:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if len(files) != len(lines):
                raise DfxInputError(f"{len(lines)} labels for {len(files)} images in {folder}", file=labels)
            pairs = [(f, int(p[0])) for f, p in zip(files, lines)]
    except ValueError as exc:
        raise DfxInputError(f"bad label line ({exc})", file=labels) from None
    imgs = [read_image(p) for p, _ in pairs]
    x = images_to_batch(imgs, model, input_name, [p for p, _ in pairs])
    return Dataset(x, _labels(np.array([lab for _, lab in pairs]), len(pairs), labels), str(folder))
