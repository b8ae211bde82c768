"""Write tiny_cnn.npz (the weights of tiny_cnn.json) and bars.npy (three test images).

The network tells horizontal bars from vertical bars from blank images. Its
weights are set by hand, so the script is deterministic and the files are a
few hundred bytes:

    python make_weights.py [OUTPUT_DIR]      # default: next to this script
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def weights() -> dict[str, np.ndarray]:
    """conv1: 4 line detectors (3x3); fc: 3 classes from the pooled 4x4x4 maps."""
    horizontal = np.array([[-0.5, -0.5, -0.5], [1.0, 1.0, 1.0], [-0.5, -0.5, -0.5]])
    vertical = horizontal.T
    diagonal = np.eye(3) - 0.5 * (1 - np.eye(3))
    anti = diagonal[:, ::-1]
    conv_w = np.stack([horizontal, vertical, diagonal, anti])[:, None].astype(np.float32)  # 4,1,3,3
    conv_b = np.array([-0.25, -0.25, -0.25, -0.25], np.float32)
    fc_w = np.zeros((3, 4, 4, 4), np.float32)       # class, channel, y, x (flattened below)
    fc_w[0, 0] = 0.25                                # "horizontal" <- horizontal detector
    fc_w[1, 1] = 0.25                                # "vertical" <- vertical detector
    fc_w[0, 1] = fc_w[1, 0] = -0.125
    fc_b = np.array([0.0, 0.0, 0.5], np.float32)     # "blank" wins when nothing fires
    return {"conv1.weight": conv_w, "conv1.bias": conv_b,
            "fc.weight": fc_w.reshape(3, 64), "fc.bias": fc_b}


def images() -> np.ndarray:
    """Raw 0..255 images, N=3: a horizontal bar, a vertical bar, blank."""
    x = np.zeros((3, 1, 8, 8), np.float32)
    x[0, 0, 3, 1:7] = 255.0
    x[1, 0, 1:7, 4] = 255.0
    return x


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).parent
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "tiny_cnn.npz", **weights())
    np.save(out / "bars.npy", images())
    print(f"wrote {out / 'tiny_cnn.npz'} and {out / 'bars.npy'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
