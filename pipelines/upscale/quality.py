"""Super-resolution quality as the field reports it: PSNR and SSIM on the Y channel.

Y is ITU-R BT.601 luma in 16..235 (as in RDN/ESRGAN papers' MATLAB `rgb2ycbcr`), and
`scale` pixels are shaved from every border before comparing. SSIM is scikit-image's
`structural_similarity` (Wang et al. 2004, Gaussian window as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


def luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB -> HxW float64 Y in 16..235 (BT.601)."""
    x = rgb.astype(np.float64)
    y: np.ndarray = 16.0 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255.0
    return y


def _shave(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border else y


def psnr_y(result: np.ndarray, reference: np.ndarray, border: int) -> float:
    """PSNR (dB) of the Y channels of two same-sized uint8 RGB images, border shaved."""
    a, b = _shave(luma(result), border), _shave(luma(reference), border)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim_y(result: np.ndarray, reference: np.ndarray, border: int) -> float:
    """SSIM of the Y channels (scikit-image, Gaussian window), border shaved."""
    from skimage.metrics import structural_similarity

    a, b = _shave(luma(result), border), _shave(luma(reference), border)
    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5))


def bicubic(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's bicubic resize of a uint8 RGB array to `width` x `height`."""
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BICUBIC))


def degrade(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR): `hr` cropped to a multiple of `scale`, and its bicubic downscale."""
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    hr = np.ascontiguousarray(hr[:h, :w])
    return bicubic(hr, w // scale, h // scale), hr


def photos(side: int) -> dict[str, np.ndarray]:
    """Centre crops (`side` px) of the four scikit-image photos the issue names."""
    from skimage import data

    out = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = getattr(data, name)()
        top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
        out[name] = np.ascontiguousarray(image[top : top + side, left : left + side])
    return out


@dataclass(frozen=True)
class Gain:
    """Mean PSNR-Y / SSIM-Y of a model's outputs and of bicubic on the same LR inputs."""

    psnr: float
    psnr_bicubic: float
    ssim: float
    ssim_bicubic: float

    @property
    def psnr_gain(self) -> float:
        return self.psnr - self.psnr_bicubic


def gain(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scale: int) -> Gain:
    """Score (LR, SR, HR) triples: the model's SR against bicubic(LR), both vs HR."""
    rows = []
    for lr, sr, hr in pairs:
        bic = bicubic(lr, hr.shape[1], hr.shape[0])
        rows.append(
            (
                psnr_y(sr, hr, scale),
                psnr_y(bic, hr, scale),
                ssim_y(sr, hr, scale),
                ssim_y(bic, hr, scale),
            )
        )
    means = np.mean(np.array(rows), axis=0)
    return Gain(*(float(m) for m in means))
