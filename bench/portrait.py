"""Portrait ops on the CPU: latency at 1 MP and background-removal mask quality.

    python -m bench.portrait [--runs 10] [--wheels .whl]

Latency: scikit-image's astronaut scaled to 1024x1024 (1.05 MP), median of `--runs`
after one warm-up call (models load on first use). Quality: IoU of each segmenter's
mask (alpha >= 0.5) against `ASTRONAUT_SUBJECT`, a polygon traced by hand around the
astronaut and the helmet she holds, checked by rendering it over the photo.

The selfie model is read from the mediapipe 0.10.21 wheel in `--wheels` (see
`selfie_model_from_wheels`); without it only the GrabCut rows are measured.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from skimage import data

from pipelines.portrait.selfie_wheel import selfie_model_from_wheels
from samples.recipes import recipe_path

ROOT = Path(__file__).resolve().parents[1]

# The subject of skimage's astronaut (512x512): the astronaut with her hair, suit,
# neck ring and glove, and the helmet she holds; not the flag, the shuttle model, the
# backdrop or the black stand. Traced at 2x-6x zoom; boundary error about 2 px.
ASTRONAUT_SUBJECT: tuple[tuple[int, int], ...] = (
    (235, 14), (255, 16), (270, 22), (287, 37), (296, 55), (300, 85), (297, 108),
    (288, 122), (276, 130), (270, 142), (265, 152), (263, 165), (265, 174), (274, 181),
    (287, 194), (296, 210), (302, 228), (316, 241), (332, 250), (342, 262), (350, 286),
    (357, 316), (362, 341), (376, 346), (400, 342), (425, 342), (460, 352), (480, 370),
    (492, 400), (498, 436), (502, 452), (512, 462), (512, 512), (15, 512), (17, 481),
    (20, 431), (20, 381), (25, 331), (35, 306), (38, 298), (42, 287), (48, 272),
    (56, 258), (67, 245), (77, 235), (88, 224), (100, 214), (112, 207), (115, 190),
    (125, 170), (140, 160), (160, 152), (185, 150), (181, 127), (172, 115), (160, 100),
    (154, 80), (157, 60), (170, 40), (190, 27), (210, 20),
)  # fmt: skip


def astronaut_subject_mask() -> np.ndarray:
    """The hand-traced reference mask (bool, 512x512) of the astronaut photo."""
    mask = np.zeros((512, 512), np.uint8)
    cv2.fillPoly(mask, [np.array(ASTRONAUT_SUBJECT, np.int32)], 1)
    return mask.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def photo_1mp() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)


def median_ms(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of `call`, after one warm-up call. CPU time
    counts every thread, so on a busy machine it is the steadier of the two."""
    call()  # warm-up: loads models, fills caches
    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


RECIPE = (
    ("auto_levels", {"clip_percent": 0.5}),
    ("skin_smooth", {"strength": 0.5}),
    ("remove_background", {"method": "auto"}),
)
"""The steps of samples/recipes/portrait_retouch.yaml."""


def run_steps(image: Image.Image, steps: Any, lane: Any, models: Any) -> Image.Image:
    """Run (op, params) steps in order, as a worker's render loop does."""
    from jobs.ops import get_op
    from pipelines.base import OpContext
    from pipelines.registry import implementation

    for name, params in steps:
        ctx = OpContext(lane=lane, models=models)
        image = implementation(name)(image, get_op(name).validate(params), ctx)
    return image


def encode_webp(image: Image.Image) -> bytes:
    """WebP at the fastest effort (method 0): 17 ms at 1 MP against 66 ms at the
    default effort and 360 ms for PNG; what a preview should be sent as."""
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80, method=0)
    return buffer.getvalue()


def end_to_end(jpeg: bytes, lane: Any, models: Any) -> bytes:
    """Decode a JPEG input, run the recipe, encode the result: a preview's whole path
    through a worker, less the network and Redis."""
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    return encode_webp(run_steps(image, RECIPE, lane, models))


def latency_rows(models: Any, runs: int) -> list[tuple[str, str, str, str]]:
    """(what, lane, median wall ms, median CPU ms) for each portrait op and the recipe at 1 MP."""
    import jobs.ops.portrait  # noqa: F401  (registers the portrait ops)
    from jobs.schema import Lane
    from pipelines.portrait.nets import face_analyzer

    image = photo_1mp()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    analyzer = face_analyzer()
    rows: list[tuple[str, str, Callable[[], Any]]] = [
        ("face detect (YuNet)", "-", partial(analyzer.detect, image)),
        ("face detect + SFace embedding", "-", partial(analyzer.detect, image, embed=True)),
    ]
    methods = ["selfie", "grabcut"] if models is not None else ["grabcut"]
    for lane in (Lane.FINAL, Lane.PREVIEW):
        steps: Any = [("skin_smooth", {"strength": 0.5})]
        rows.append(("skin_smooth", lane.value, partial(run_steps, image, steps, lane, models)))
        for method in methods:
            steps = [("remove_background", {"method": method})]
            cut = partial(run_steps, image, steps, lane, models)
            rows.append((f"remove_background {method}", lane.value, cut))
        recipe = partial(run_steps, image, RECIPE, lane, models)
        rows.append(("recipe portrait_retouch", lane.value, recipe))
        whole = partial(end_to_end, jpeg, lane, models)
        rows.append(("JPEG in + recipe + WebP out", lane.value, whole))
    measured = [(name, lane, *median_ms(call, runs)) for name, lane, call in rows]
    return [(name, lane, f"{wall:.1f}", f"{cpu:.1f}") for name, lane, wall, cpu in measured]


def quality_rows(models: Any) -> list[tuple[str, str, str]]:
    """(segmenter, IoU vs the traced astronaut, person share of a photo with no person)."""
    from skimage import data

    from pipelines.portrait.nets import face_analyzer, selfie_segmenter
    from pipelines.portrait.segmentation import GrabCutSegmenter, refine_alpha

    astronaut, reference = data.astronaut(), astronaut_subject_mask()
    segmenters: list[Any] = [GrabCutSegmenter(face_analyzer())]
    if models is not None:
        segmenters.insert(0, selfie_segmenter(models))
    rows = []
    for segmenter in segmenters:
        alpha = refine_alpha(astronaut, segmenter.segment(astronaut), 2.0)
        try:
            empty = refine_alpha(data.coffee(), segmenter.segment(data.coffee()), 2.0)
            no_person = f"{(empty >= 0.5).mean():.1%}"
        except Exception as exc:  # GrabCut needs a face to seed it
            no_person = f"refused ({type(exc).__name__})"
        rows.append((segmenter.name, f"{iou(alpha >= 0.5, reference):.3f}", no_person))
    return rows


def preview_lane_rows(wheels: Path, runs: int) -> list[tuple[str, str, str, str]]:
    """portrait_retouch previews through the queue: a real preview worker, a 1 MP JPEG,
    submit-to-done from the job records (the user's wait), first job separately."""
    from bench.harness import lab
    from jobs.schema import Job, Lane, OutputSpec
    from jobs.settings import Settings
    from model_store import ModelStore
    from producer.recipes import load_recipe
    from transport.store import JobStore, Submission

    recipe = load_recipe(recipe_path("portrait_retouch")).recipe
    with lab() as here:
        store_dir = here.tmp / "models"
        selfie = selfie_model_from_wheels(wheels, here.tmp / "selfie")
        if selfie is not None:
            models = ModelStore.from_settings(Settings(model_store=str(store_dir), home=here.tmp))
            models.publish(
                here.tmp / "selfie",
                "selfie-segmentation",
                "1",
                pipeline_class="mediapipe.SelfieSegmentation",
                license="apache-2.0",
            )
        photo = here.tmp / "portrait.jpg"
        Image.fromarray(data.astronaut()).resize((1024, 1024)).save(photo, quality=92)
        here.worker("preview", name="bench-portrait", DARKROOM_MODEL_STORE=str(store_dir))
        jobs = JobStore(here.client)
        waits = []
        for i in range(runs + 1):
            job = Job(
                input=photo.as_uri(),
                recipe=recipe,
                mode=Lane.PREVIEW,
                priority=0,
                output=OutputSpec(format="webp", quality=80, key=f"p{i}"),
            )
            jobs.enqueue([Submission(job, "cpu.preview")])
            while (record := jobs.get(job.id)) is None or not record.state.terminal:
                time.sleep(0.002)
            if record.state.value != "succeeded":
                raise RuntimeError(f"preview failed: {record.error_message}")
            waits.append((record.succeeded_at or 0) - (record.queued_at or 0))
            info = (record.result or {}).get("info", {})
    first, rest = waits[0] * 1000, sorted(w * 1000 for w in waits[1:])
    method = str(info.get("remove_background.method", "?"))  # what the worker really ran
    return [
        ("portrait_retouch preview, first job (loads models)", method, f"{first:.0f}", ""),
        (
            "portrait_retouch preview, submit-to-done",
            method,
            f"p50 {rest[len(rest) // 2]:.0f}",
            f"p95 {rest[int(len(rest) * 0.95) - 1]:.0f}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    args = parser.parse_args()

    from bench.harness import table
    from pipelines.faces import FolderModels

    with tempfile.TemporaryDirectory(prefix="darkroom-portrait-") as tmp:
        model = selfie_model_from_wheels(args.wheels, Path(tmp) / "selfie-segmentation")
        models = FolderModels(Path(tmp)) if model else None
        if models is None:
            print(f"no mediapipe 0.10.21 wheel in {args.wheels}: selfie rows skipped")
        print(f"CPU latency at 1024x1024, median of {args.runs} (ms)")
        print(table(latency_rows(models, args.runs), ["op", "lane", "wall ms", "CPU ms"]))
        print("\nbackground masks (alpha >= 0.5)")
        header = ["segmenter", "IoU astronaut", "person on coffee (no person)"]
        print(table(quality_rows(models), header))
        print("\nthrough the preview lane (real Redis + preview worker), 1 MP JPEG in, WebP out")
        print(
            table(
                preview_lane_rows(args.wheels, args.runs * 2),
                ["job", "background", "ms", "target 200 ms"],
            )
        )


if __name__ == "__main__":
    main()
