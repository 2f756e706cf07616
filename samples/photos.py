"""Real photos for demos and tests, and the damage old photos suffer, made on purpose.

The photos are scikit-image's bundled images (they load offline; skimage images that
are fetched on first use are never touched). Each degradation is deterministic (fixed
seeds), so tests can measure how much an op undoes it, and the demo's sample set is
the same on every machine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "motorcycle")


@functools.lru_cache(maxsize=len(PHOTOS))
def _bundled(name: str) -> NDArray[np.uint8]:
    # Imported here: `darkroom` commands that never touch a sample do not pay for it.
    from skimage import data

    if name == "motorcycle":
        return np.ascontiguousarray(data.stereo_motorcycle()[0])
    return np.ascontiguousarray(getattr(data, name)())


def load_photo(name: str) -> Image.Image:
    """One of `PHOTOS` as a new PIL image (RGB; `camera` is gray, mode L)."""
    if name not in PHOTOS:
        raise KeyError(f"unknown sample photo {name!r}; known: {', '.join(PHOTOS)}")
    return Image.fromarray(_bundled(name).copy())


def _pixels(image: Image.Image) -> NDArray[np.float32]:
    return np.asarray(image, dtype=np.float32)


def _image(pixels: NDArray[np.floating]) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def add_noise(image: Image.Image, sigma: float = 15.0, seed: int = 0) -> Image.Image:
    """Add gaussian noise of standard deviation `sigma` levels (film grain, sensor noise)."""
    rng = np.random.default_rng(seed)
    pixels = _pixels(image)
    return _image(pixels + rng.normal(0.0, sigma, pixels.shape).astype(np.float32))


def fade(image: Image.Image, amount: float = 0.6) -> Image.Image:  # RGB only
    """Age an RGB print: contrast and saturation drop, blacks lift, a warm cast creeps in.

    Dyes fade at different rates (the yellow-forming layer fastest here), and the paper
    base yellows: modelled as a per-channel contrast loss plus a warm fog.
    """
    pixels = _pixels(image) / 255.0
    gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    pixels = gray[..., None] + (pixels - gray[..., None]) * (1.0 - 0.6 * amount)
    contrast = 1.0 - amount * np.array([0.45, 0.55, 0.70], dtype=np.float32)
    fog = amount * np.array([0.30, 0.22, 0.08], dtype=np.float32)
    return _image((fog + pixels * contrast) * 255.0)


def color_cast(
    image: Image.Image, gains: tuple[float, float, float] = (0.8, 0.95, 1.3)
) -> Image.Image:
    """Tint an RGB image by per-channel gains in linear light (wrong white balance)."""
    linear = (_pixels(image) / 255.0) ** 2.2
    tinted = np.clip(linear * np.array(gains, dtype=np.float32), 0.0, 1.0) ** (1 / 2.2)
    return _image(tinted * 255.0)


def underexpose(image: Image.Image, stops: float = 1.5) -> Image.Image:
    """Darken by `stops` in linear light, as a short exposure would."""
    linear = (_pixels(image) / 255.0) ** 2.2
    return _image((linear * 2.0**-stops) ** (1 / 2.2) * 255.0)


def blur(image: Image.Image, sigma: float = 1.5) -> Image.Image:
    """Gaussian blur (soft focus, camera shake)."""
    return Image.fromarray(cv2.GaussianBlur(np.asarray(image), (0, 0), sigmaX=sigma))


def tilt(image: Image.Image, degrees: float = 4.0) -> Image.Image:
    """Rotate about the centre, corners filled white: a crooked scan."""
    pixels = np.asarray(image)
    h, w = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    white = (255,) * (1 if pixels.ndim == 2 else pixels.shape[2])
    turned = cv2.warpAffine(
        pixels,
        matrix,
        (w, h),
        flags=cv2.INTER_CUBIC,
        borderValue=white,  # type: ignore[arg-type]
    )
    return Image.fromarray(turned)


def add_defects(
    image: Image.Image, scratches: int = 6, specks: int = 40, seed: int = 0
) -> tuple[Image.Image, NDArray[np.bool_]]:
    """Draw thin scratches and dust specks, bright and dark; also return where they are.

    Scratches are 1-2 px wide lines across much of the frame, specks 1-2 px radius
    dots; half of each are bright (dust on a negative), half dark (dust on a print).
    """
    rng = np.random.default_rng(seed)
    pixels = np.array(image)
    h, w = pixels.shape[:2]
    bright = np.zeros((h, w), np.uint8)
    dark = np.zeros((h, w), np.uint8)
    for i in range(scratches):
        start = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.3, 0.8) * max(w, h)
        end = (int(start[0] + length * np.cos(angle)), int(start[1] + length * np.sin(angle)))
        cv2.line(bright if i % 2 == 0 else dark, start, end, 255, int(rng.integers(1, 3)))
    for i in range(specks):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(bright if i % 2 else dark, centre, int(rng.integers(1, 3)), 255, -1)
    shade = rng.uniform(0.85, 1.0)
    pixels[bright > 0] = np.uint8(255 * shade)
    pixels[dark > 0] = np.uint8(25 * shade)
    return Image.fromarray(pixels), (bright > 0) | (dark > 0)


def _enlarge(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def _dark_dusty(image: Image.Image) -> Image.Image:
    return add_defects(underexpose(image, 1.2), scratches=4, specks=60, seed=5)[0]


def _old_print(image: Image.Image) -> Image.Image:
    damaged, _ = add_defects(fade(image, 0.55), scratches=5, specks=30, seed=7)
    return add_noise(damaged, 6.0, seed=7)


# file name -> (photo, enlargement, damage): 0.3-0.5 MP each, the damage the restore
# recipe is meant to undo on photos it suits, plus a crooked scan it cannot fix.
SAMPLE_SET: dict[str, tuple[str, float, Callable[[Image.Image], Image.Image]]] = {
    "astronaut-old-print.jpg": ("astronaut", 1.25, _old_print),
    "astronaut-noisy.png": ("astronaut", 1.25, lambda im: add_noise(im, 14.0, seed=1)),
    "astronaut-warm-cast.jpg": ("astronaut", 1.25, lambda im: color_cast(im, (1.25, 1.0, 0.75))),
    "motorcycle-faded.jpg": ("motorcycle", 1.0, lambda im: fade(im, 0.6)),
    "coffee-underexposed.jpg": ("coffee", 1.25, lambda im: underexpose(im, 1.5)),
    "chelsea-scratched.png": ("chelsea", 1.5, lambda im: add_defects(im, seed=2)[0]),
    "camera-underexposed-dusty.png": ("camera", 1.25, _dark_dusty),
    "motorcycle-tilted.jpg": ("motorcycle", 1.0, lambda im: tilt(im, 4.0)),
}


# Portraits for the portrait_retouch recipe: the one face photo scikit-image ships, as
# a studio would send it (1 MP), and warm and underexposed.
PORTRAIT_SET: dict[str, tuple[str, float, Callable[[Image.Image], Image.Image]]] = {
    "astronaut-studio.jpg": ("astronaut", 2.0, lambda im: im),
    "astronaut-warm-dim.jpg": (
        "astronaut",
        1.5,
        lambda im: underexpose(color_cast(im, (1.15, 1.0, 0.85)), 0.7),
    ),
}


def make_portrait_set(out_dir: Path) -> list[Path]:
    """Write the demo's portraits (JPEG quality 92) into `out_dir`."""
    return _write_set(PORTRAIT_SET, out_dir)


def make_sample_set(out_dir: Path) -> list[Path]:
    """Write the bundled sample photos (JPEG quality 92, PNG) into `out_dir`."""
    return _write_set(SAMPLE_SET, out_dir)


def _write_set(
    photos: dict[str, tuple[str, float, Callable[[Image.Image], Image.Image]]], out_dir: Path
) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for file_name, (photo, factor, damage) in photos.items():
        path = out_dir / file_name
        image = damage(_enlarge(load_photo(photo), factor))
        if path.suffix == ".jpg":
            image.save(path, quality=92)
        else:
            image.save(path)
        paths.append(path)
    return paths
