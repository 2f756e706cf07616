"""The worker's render path on the field cases: what lands in the output folder.

`workers.render.render` is what a worker's task runs (fetch, decode, steps, encode,
write); here it reads the case files and writes into a temporary folder, and every
output is read back the way a user would open it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from jobs.errors import InputInvalid
from jobs.schema import Job, OutputSpec, Recipe, Step
from jobs.settings import Settings
from workers.render import Hooks, RenderResult, render

pytestmark = pytest.mark.integration

CASES = Path(__file__).parent.parent / "cases" / "images"


def run(
    tmp_path: Path, case: str, steps: list[dict[str, Any]], **output: Any
) -> tuple[RenderResult, list[Path]]:
    job = Job(
        input=(CASES / case).as_uri(),
        recipe=Recipe(steps=[Step.model_validate(s) for s in steps]),
        output=OutputSpec(uri=(tmp_path / "out").as_uri() + "/", key="result", **output),
    )
    result = render(job, Settings(output=str(tmp_path / "out")), Hooks())
    return result, sorted((tmp_path / "out").glob("result*"))


def levels(pixels: np.ndarray) -> list[int]:
    return [len(np.unique(pixels[..., c])) for c in range(pixels.shape[-1])]


def test_case_01_a_16_bit_scan_comes_out_smooth_and_16_bit(tmp_path: Path) -> None:
    source = cv2.imread(str(CASES / "01-16bit-scan-posterized.tif"), cv2.IMREAD_UNCHANGED)

    _, (png,) = run(
        tmp_path,
        "01-16bit-scan-posterized.tif",
        [{"auto_levels": {"clip_percent": 0.1}}],
        format="png",
    )

    out = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16
    assert all(a >= 0.9 * b for a, b in zip(levels(out), levels(source), strict=True))


def test_case_01_as_jpeg_is_dithered_not_posterized(tmp_path: Path) -> None:
    _, (jpeg,) = run(
        tmp_path,
        "01-16bit-scan-posterized.tif",
        [{"auto_levels": {"clip_percent": 0.1}}],
        format="jpeg",
    )

    assert min(levels(np.asarray(Image.open(jpeg)))) > 200  # it was 13


def test_case_02_a_png_with_huge_xmp_is_processed(tmp_path: Path) -> None:
    result, (webp,) = run(tmp_path, "02-huge-xmp-png-rejected.png", [{"resize": {"width": 75}}])

    assert Image.open(webp).size == (75, 50)
    assert any("XMP metadata of 1.7 MB dropped" in str(v) for v in result.info.values())


def test_case_04_every_page_is_processed_into_one_multipage_tiff(tmp_path: Path) -> None:
    result, (tif,) = run(
        tmp_path,
        "04-multipage-tiff-pages-dropped.tif",
        [{"resize": {"max_side": 128}}],
        format="tiff",
    )

    with Image.open(tif) as pages:
        sizes = []
        for n in range(pages.n_frames):  # type: ignore[attr-defined]
            pages.seek(n)
            sizes.append(pages.size)
    assert sizes == [(128, 49), (128, 128), (128, 128)]
    assert result.info["input_pages"] == 3


def test_case_04_as_jpeg_gives_one_output_per_page_and_lists_them(tmp_path: Path) -> None:
    result, files = run(
        tmp_path, "04-multipage-tiff-pages-dropped.tif", [{"auto_levels": {}}], format="jpeg"
    )

    assert [f.name for f in files] == ["result.jpg", "result.p2.jpg", "result.p3.jpg"]
    assert len(result.info["outputs"]) == 3 and result.output.endswith("/result.jpg")


@pytest.mark.parametrize("case", ["07-animated-webp-first-frame.webp", "08-gif-refused.gif"])
def test_cases_07_08_animations_keep_every_frame_and_the_timing(tmp_path: Path, case: str) -> None:
    _, (webp,) = run(tmp_path, case, [{"resize": {"width": 60}}, {"sharpen": {}}])

    with Image.open(webp) as out:
        out.load()
        assert out.n_frames == 3 and out.size == (60, 45)  # type: ignore[attr-defined]
        assert out.info["duration"] == 200


def test_an_animation_to_a_generative_op_fails_clearly_unless_asked_for_frame_one(
    tmp_path: Path,
) -> None:
    steps = [{"ip2p_edit": {"prompt": "make it snow"}}]

    with pytest.raises(InputInvalid, match=r"3 frames; ip2p_edit edits one image.*'first'"):
        run(tmp_path, "08-gif-refused.gif", steps)


def test_frames_first_renders_the_first_frame_and_says_so(tmp_path: Path) -> None:
    result, (png,) = run(
        tmp_path, "08-gif-refused.gif", [{"auto_levels": {}}], format="png", frames="first"
    )

    assert getattr(Image.open(png), "n_frames", 1) == 1
    assert result.info["frames_dropped"] == "frames 2-3 left out (output.frames: first)"


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "tiff"])
def test_case_10_metadata_kept_by_default_and_stripped_on_request(tmp_path: Path, fmt: str) -> None:
    _, (kept,) = run(
        tmp_path / "k", "10-metadata-stripped.jpg", [{"exposure": {"ev": 0.2}}], format=fmt
    )
    _, (stripped,) = run(
        tmp_path / "s",
        "10-metadata-stripped.jpg",
        [{"exposure": {"ev": 0.2}}],
        format=fmt,
        metadata="strip",
    )

    with Image.open(kept) as image:
        assert image.size == (300, 200)
        assert image.getexif().get(0x8298) == "(c) Test Studio"
        assert image.getexif().get(0x0132) == "2024:05:01 10:00:00"
        assert image.getexif().get(0x0112) in (None, 1)
    with Image.open(stripped) as image:
        assert 0x8298 not in image.getexif() and 0x0132 not in image.getexif()


def test_keep_steps_writes_the_intermediates_of_a_16_bit_job(tmp_path: Path) -> None:
    job_steps = [{"auto_levels": {}}, {"resize": {"max_side": 100}}]

    result, _ = run(
        tmp_path, "01-16bit-scan-posterized.tif", job_steps, format="png", keep_steps=True
    )

    steps = sorted((tmp_path / "out" / "result.steps").iterdir())
    assert [p.name for p in steps] == ["00-auto_levels.png", "01-resize.png"]
    assert cv2.imread(str(steps[0]), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert (result.width, result.height) == (100, 67)


def test_the_output_of_a_transparent_cutout_keeps_alpha_through_classic_ops(
    tmp_path: Path,
) -> None:
    _, (png,) = run(tmp_path, "05-generative-drops-alpha.png", [{"sharpen": {}}], format="png")

    before = np.asarray(Image.open(CASES / "05-generative-drops-alpha.png"))
    after = np.asarray(Image.open(png))
    assert after.shape[2] == 4 and np.array_equal(after[..., 3], before[..., 3])


def test_every_output_reads_back(tmp_path: Path) -> None:
    """Each format, read back by Pillow from the bytes written."""
    for fmt in ("webp", "jpeg", "png", "tiff"):
        _, (out,) = run(
            tmp_path / fmt, "03-folder-scan-skips.MPO", [{"crop": {"aspect": "1:1"}}], format=fmt
        )
        assert Image.open(io.BytesIO(out.read_bytes())).size == (320, 320)
