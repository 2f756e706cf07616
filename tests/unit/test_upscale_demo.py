"""The demo's bicubic-vs-AI sheet: crops with their originals, PSNR-Y gain printed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage")

from darkroom import upscale_demo


def test_sheet_measures_each_crop_against_its_original(tmp_path: Path) -> None:
    crops = upscale_demo.make_crops(tmp_path / "crops")
    assert set(crops) == {"astronaut", "chelsea", "coffee", "rocket"}
    results = tmp_path / "results"
    results.mkdir()
    for name, path in crops.items():
        with Image.open(path) as small:
            assert small.size == (48, 48)
            big = small.resize((192, 192), Image.Resampling.BICUBIC)
        if name == "astronaut":  # a perfect "AI" result: the original itself, plus 1 level
            original = tmp_path / "crops-originals" / "astronaut.png"
            big = Image.fromarray(
                np.clip(np.asarray(Image.open(original), int) + 1, 0, 255).astype(np.uint8)
            )
        big.save(results / f"{name}.png")
    written = upscale_demo.write_sheet(crops, results, tmp_path / "sheet.html")
    assert written is not None
    sheet, mean_gain = written
    text = sheet.read_text()
    assert text.count("<tr>") == 4 and "+0.00 dB</th>" in text
    assert mean_gain > 2  # the astronaut row's large gain lifts the mean; bicubic rows add 0
