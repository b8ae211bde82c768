"""Image inputs of ``dfxsdk run``/``eval``/``quantize``: every format, content detection, bad files.

Pillow (the ``images`` extra, part of ``dev``) writes the test images; the tests of
the Pillow-less path make :func:`dfxsdk.cli._images._pillow` report it missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from dfxsdk import Preprocessing, load, ops, save
from dfxsdk.cli import _images

from tests.support.builder import Builder, fmt, small_cnn
from tests.support.cli import cli
from tests.support.images import run_output

Image = pytest.importorskip("PIL.Image", reason="Pillow (the 'images' extra) is not installed")

#: format -> (Pillow format name, file suffix, channels)
FORMATS = {"jpeg": ("JPEG", ".jpg", 3), "png": ("PNG", ".png", 3), "bmp": ("BMP", ".bmp", 3),
           "pgm": ("PPM", ".pgm", 1), "ppm": ("PPM", ".ppm", 3)}


@pytest.fixture()
def rgb_model(tmp_path):
    """A small integer network on 3x8x8 BGR input (so a wrong channel order changes the result)."""
    path = tmp_path / "rgb.dfx"
    small_cnn(path, channels=3, size=8, filters=4, classes=5, q_in=fmt(8, 5), q_w=fmt(8, 5), q_conv=fmt(8, 3),
              q_fc=fmt(8, 2), scale=1 / 256, channel_order="BGR")
    return path


def pixels(channels: int, seed: int = 0) -> np.ndarray:
    """Smooth 8x8 content (JPEG keeps it close), H,W,C uint8."""
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.arange(8), np.arange(8)) * 12 + rng.integers(0, 40)
    img = np.stack([base + 30 * k for k in range(channels)], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def write(path, img: np.ndarray, pil_format: str) -> None:
    Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(path, format=pil_format, quality=95)


def run_outputs(model_path, tmp_path, *inputs) -> np.ndarray:
    return run_output(model_path, tmp_path / "out.npz", *[a for i in inputs for a in ("--input", i)])


def expected(model_path, imgs: list[np.ndarray]) -> np.ndarray:
    """The model on the decoded pixels, BGR, through its stored preprocessing."""
    model = load(model_path)
    raw = np.stack([(np.repeat(i, 3, axis=2) if i.shape[2] == 1 else i)[:, :, ::-1].transpose(2, 0, 1)
                    for i in imgs]).astype(np.float32)
    return model.run({"data": model.preprocessing["data"].apply(raw)})["score"]


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_run_reads_every_format_by_content(kind, rgb_model, tmp_path):
    pil_format, suffix, channels = FORMATS[kind]
    img = pixels(channels, seed=len(kind))
    named = tmp_path / f"x{suffix}"
    write(named, img, pil_format)
    disguised = tmp_path / "looks_like.npy"          # the content decides, not the name
    disguised.write_bytes(named.read_bytes())
    decoded = _images.read_image(named)
    if kind != "jpeg":
        assert np.array_equal(decoded, img)           # lossless formats: the exact pixels
    else:
        assert decoded.shape == img.shape and np.abs(decoded.astype(int) - img).max() <= 8
    want = expected(rgb_model, [decoded])               # a gray image feeds R = G = B
    for path in (named, disguised):
        assert np.array_equal(run_outputs(rgb_model, tmp_path, path), want), path.name


def test_one_channel_model_reads_color_images_as_gray(tmp_path):
    b = Builder("gray")
    x = b.input((1, 1, 8, 8), name="data")
    y = b.add(ops.Flatten(), [x], None, outputs=["score"])
    m = b.output(y)
    m.preprocessing["data"] = Preprocessing(channel_order="GRAY")
    path = tmp_path / "gray.dfx"
    save(m, path)
    img = pixels(3)
    write(tmp_path / "c.bmp", img, "BMP")
    got = run_outputs(path, tmp_path, tmp_path / "c.bmp")
    gray = np.round(img @ np.array([0.299, 0.587, 0.114]))
    assert np.array_equal(got.reshape(8, 8), gray)


def test_without_pillow_png_and_pnm_still_read_jpeg_refused(rgb_model, tmp_path, monkeypatch):
    img = pixels(3)
    for kind in ("png", "ppm", "jpeg", "bmp"):
        pil_format, suffix, _ = FORMATS[kind]
        write(tmp_path / f"x{suffix}", img, pil_format)
    with_pillow = {k: run_outputs(rgb_model, tmp_path, tmp_path / f"x{FORMATS[k][1]}") for k in ("png", "ppm")}
    monkeypatch.setattr(_images, "_pillow", lambda: None)
    for kind, want in with_pillow.items():
        assert np.array_equal(run_outputs(rgb_model, tmp_path, tmp_path / f"x{FORMATS[kind][1]}"), want)
    for kind in ("jpeg", "bmp"):
        path = tmp_path / f"x{FORMATS[kind][1]}"
        code, _, err = cli("run", rgb_model, "--input", path, "-o", tmp_path / "o.npz")
        assert code == 3 and "dfxsdk[images]" in err and path.name in err, err


def truncated_jpeg(tmp_path):
    write(tmp_path / "full.jpg", pixels(3), "JPEG")
    data = (tmp_path / "full.jpg").read_bytes()
    return data[:len(data) // 2]


@pytest.mark.parametrize("name,content", [
    ("empty.jpg", b""), ("empty.npy", b""), ("empty", b""), ("empty.png", b""),
    ("half.jpg", "truncated-jpeg"), ("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
    ("text.png", b"not an image at all\n"), ("noise.bin", bytes(range(7, 200))),
    ("short.pgm", b"P5\n8 8\n255\n" + b"\x01" * 10), ("header.ppm", b"P6\nx y\n255\n"),
])
@pytest.mark.parametrize("pillow", [True, False])
def test_bad_input_files_exit_2_naming_the_file(name, content, pillow, rgb_model, tmp_path, monkeypatch):
    if content == "truncated-jpeg":
        if not pillow:
            pytest.skip("without Pillow a JPEG is refused as unsupported before it is decoded")
        content = truncated_jpeg(tmp_path)
    if not pillow:
        monkeypatch.setattr(_images, "_pillow", lambda: None)
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "o.npz"
    code, _, err = cli("run", rgb_model, "--input", path, "-o", out)
    assert code == 2, err
    assert name in err and ("expected" in err or "truncated" in err or "corrupt" in err), err
    assert "pickle" not in err and not out.exists()


def test_eval_and_quantize_read_an_image_folder(rgb_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    imgs = [pixels(3, seed=s) for s in range(4)]
    for i, img in enumerate(imgs):
        write(folder / f"{i}.{'jpg' if i % 2 else 'bmp'}", img, "JPEG" if i % 2 else "BMP")
    (tmp_path / "labels.txt").write_text("".join(f"{i}.{'jpg' if i % 2 else 'bmp'} {i % 5}\n" for i in range(4)))
    code, out, err = cli("eval", rgb_model, "--data", folder, "--labels", tmp_path / "labels.txt", "--no-progress")
    assert code == 0 and "4" in out, err
    (folder / "4.jpg").write_bytes(b"")
    code, _, err = cli("eval", rgb_model, "--data", folder, "--labels", tmp_path / "labels.txt", "--no-progress")
    assert code == 0, err                               # the labels file names the images it uses
    code, _, err = cli("quantize", rgb_model, "--calib", folder, "--no-progress", "-o", tmp_path / "q.dfx")
    assert code == 2 and "4.jpg" in err and "empty" in err, err


def test_quantize_sets_the_channel_order(tmp_path):
    b = Builder("float")
    x = b.input((1, 3, 8, 8), name="data")
    c = b.add(ops.Conv2D(kernel_h=3, kernel_w=3), [x, b.const(np.random.default_rng(1).standard_normal((2, 3, 3, 3)))],
              None)
    y = b.add(ops.Flatten(), [c], None, outputs=["score"])
    m = b.output(y)
    path = tmp_path / "f.dfx"
    save(m, path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        write(folder / f"{i}.png", pixels(3, seed=i), "PNG")
    out = tmp_path / "q.dfx"
    code, _, err = cli("quantize", path, "--calib", folder, "--input-channel-order", "BGR", "--input-scale",
                       "0.00390625", "--no-progress", "-o", out)
    assert code == 0, err
    assert load(out).preprocessing["data"].channel_order == "BGR"
