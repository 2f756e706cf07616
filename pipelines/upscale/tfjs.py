"""Read an UpscalerJS npm package (TF.js *layers* model) into an SRConfig and torch weights.

Written here rather than taken from `tensorflowjs`: that converter needs TensorFlow
(hundreds of MB) to read what is a JSON graph plus concatenated float32 shards.
The gotchas (see ../shared/FACTS.md): weights are listed out of layer order, so they are
mapped by name; kernels are HWIO; the RRDN's pixel shuffle is TF `depth_to_space` order.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jobs.errors import InputInvalid
from pipelines.upscale.arch import BETA, SRConfig, build

SCALES = (2, 3, 4, 8)


class PackageError(InputInvalid):
    """The package is not an UpscalerJS ESRGAN package this importer understands."""


@dataclass(frozen=True)
class UpscalerPackage:
    """The files of an unpacked (`DIR`, holding `package.json`) or packed (`.tgz`) package."""

    files: dict[str, bytes]

    @classmethod
    def open(cls, path: Path) -> UpscalerPackage:
        """Raises: PackageError if `path` is neither a package folder nor an npm tarball."""
        if path.is_dir():
            root = path / "package" if (path / "package" / "package.json").exists() else path
            found = {
                str(f.relative_to(root)): f.read_bytes()
                for f in root.rglob("*")
                if f.is_file() and not str(f.relative_to(root)).startswith("dist/")
            }
        elif tarfile.is_tarfile(path):
            found = dict(_tar_members(path))
        else:
            raise PackageError(f"{path} is neither a package folder nor an npm .tgz")
        if "package.json" not in found:
            raise PackageError(f"{path} has no package.json")
        return cls(found)

    @property
    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads(self.files["package.json"])
        return meta

    def read(self, rel: str) -> bytes:
        try:
            return self.files[rel]
        except KeyError:
            raise PackageError(f"package {self.meta.get('name')} has no {rel}") from None

    def scales(self) -> list[int]:
        return [s for s in SCALES if f"models/x{s}/model.json" in self.files]

    def fixture(self) -> bytes:
        return self.read("assets/fixture.png")

    def sample(self, scale: int) -> bytes | None:
        """The package's expected output for `fixture()` at `scale`, if it ships one."""
        return self.files.get(f"assets/samples/{scale}x/result.png")


def _tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if member.isfile() and not name.startswith("dist/"):
                handle = tar.extractfile(member)
                if handle is not None:
                    yield name, handle.read()


def read_model(package: UpscalerPackage, scale: int) -> tuple[SRConfig, dict[str, torch.Tensor]]:
    """The network config and torch state dict of the package's x`scale` model.

    Raises: PackageError when the model is missing or is not an ISR RDN/RRDN.
    """
    model = json.loads(package.read(f"models/x{scale}/model.json"))
    layers = {layer["name"]: layer for layer in _layers(model)}
    tf_weights = dict(_weights(package, scale, model))
    if "F_m1" in layers:
        config = _rdn_config(layers, tf_weights, scale)
        names = _rdn_names
    elif "Pre_blocks_conv" in layers:
        config = _rrdn_config(layers, tf_weights, scale)
        names = _rrdn_names
    else:
        raise PackageError(f"models/x{scale}: neither an ISR RDN nor an RRDN")
    state = {names(tf): torch.from_numpy(_to_torch(tf, w, config)) for tf, w in tf_weights.items()}
    _check_complete(config, state, scale)
    return config, state


def _layers(model: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        layers: list[dict[str, Any]] = model["modelTopology"]["model_config"]["config"]["layers"]
    except (KeyError, TypeError):
        raise PackageError("model.json is not a TF.js layers model") from None
    return layers


def _weights(
    package: UpscalerPackage, scale: int, model: dict[str, Any]
) -> Iterator[tuple[str, np.ndarray]]:
    for group in model["weightsManifest"]:
        # Shards concatenate byte for byte into one buffer per group.
        blob = b"".join(package.read(f"models/x{scale}/{p}") for p in group["paths"])
        offset = 0
        for entry in group["weights"]:
            if entry.get("dtype") != "float32" or "quantization" in entry:
                raise PackageError(f"weight {entry['name']}: only plain float32 is supported")
            count = int(np.prod(entry["shape"]))
            array = np.frombuffer(blob, "<f4", count, offset).reshape(entry["shape"])
            offset += 4 * count
            yield entry["name"], array
        if offset != len(blob):
            raise PackageError(f"models/x{scale}: shards hold {len(blob) - offset} extra bytes")


def _out_channels(weights: dict[str, np.ndarray], layer: str) -> int:
    return int(weights[f"{layer}/kernel"].shape[3])


def _count(layers: dict[str, Any], pattern: str) -> int:
    return len([n for n in layers if re.fullmatch(pattern, n)])


def _rdn_config(layers: dict[str, Any], weights: dict[str, np.ndarray], scale: int) -> SRConfig:
    size = layers["UPsample"]["config"]["size"]
    if list(size) != [scale, scale]:
        raise PackageError(f"models/x{scale}: upsamples by {size}")
    return SRConfig(
        architecture="rdn",
        scale=scale,
        features=_out_channels(weights, "F_m1"),
        growth=_out_channels(weights, "F_1_1"),
        blocks=_count(layers, r"LFF_\d+"),
        convs=_count(layers, r"F_1_\d+"),
        upscale_features=(_out_channels(weights, "UPN1"), _out_channels(weights, "UPN2")),
    )


def _rrdn_config(layers: dict[str, Any], weights: dict[str, np.ndarray], scale: int) -> SRConfig:
    betas = {
        float(v["config"]["beta"]) for v in layers.values() if v["class_name"] == "MultiplyBeta"
    }
    if betas != {BETA}:
        raise PackageError(f"models/x{scale}: residual scaling {sorted(betas)}, expected {BETA}")
    if int(layers["pixel_shuffle"]["config"]["scale"]) != scale:
        raise PackageError(f"models/x{scale}: pixel shuffle is not x{scale}")
    return SRConfig(
        architecture="rrdn",
        scale=scale,
        features=_out_channels(weights, "Pre_blocks_conv"),
        growth=_out_channels(weights, "F_1_1_1"),
        blocks=_count(layers, r"RRDB_\d+_out"),
        dense_per_block=_count(layers, r"LFF_1_\d+"),
        convs=_count(layers, r"F_1_1_\d+"),
    )


_RDN_FIXED = {"F_m1": "sfe1", "F_0": "sfe2", "GFF_1": "gff1", "GFF_2": "gff2", "SR": "sr"}
_RDN_FIXED |= {f"UPN{i}": f"upn{i}" for i in (1, 2, 3)}
_RRDN_FIXED = {"Pre_blocks_conv": "pre", "post_blocks_conv": "post"}
_RRDN_FIXED |= {"PreShuffle": "pre_shuffle", "SR": "sr"}


def _split(tf_name: str) -> tuple[str, str]:
    layer, _, kind = tf_name.rpartition("/")
    if kind not in ("kernel", "bias"):
        raise PackageError(f"unexpected weight {tf_name}")
    return layer, "weight" if kind == "kernel" else "bias"


def _rdn_names(tf_name: str) -> str:
    layer, kind = _split(tf_name)
    if layer in _RDN_FIXED:
        return f"{_RDN_FIXED[layer]}.{kind}"
    if m := re.fullmatch(r"F_(\d+)_(\d+)", layer):
        return f"rdbs.{int(m[1]) - 1}.convs.{int(m[2]) - 1}.{kind}"
    if m := re.fullmatch(r"LFF_(\d+)", layer):
        return f"rdbs.{int(m[1]) - 1}.fusion.{kind}"
    raise PackageError(f"unexpected RDN layer {layer}")


def _rrdn_names(tf_name: str) -> str:
    layer, kind = _split(tf_name)
    if layer in _RRDN_FIXED:
        return f"{_RRDN_FIXED[layer]}.{kind}"
    if m := re.fullmatch(r"F_(\d+)_(\d+)_(\d+)", layer):
        return f"rrdbs.{int(m[1]) - 1}.rdbs.{int(m[2]) - 1}.convs.{int(m[3]) - 1}.{kind}"
    if m := re.fullmatch(r"LFF_(\d+)_(\d+)", layer):
        return f"rrdbs.{int(m[1]) - 1}.rdbs.{int(m[2]) - 1}.fusion.{kind}"
    raise PackageError(f"unexpected RRDN layer {layer}")


def depth_to_space_order(scale: int, channels: int = 3) -> np.ndarray:
    """perm with torch channel `c*s*s + k` = TF `depth_to_space` channel `k*C + c`."""
    s2 = scale * scale
    return np.array([(i % s2) * channels + i // s2 for i in range(channels * s2)])


def _to_torch(tf_name: str, array: np.ndarray, config: SRConfig) -> np.ndarray:
    out = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array  # HWIO -> OIHW
    if config.architecture == "rrdn" and tf_name.startswith("PreShuffle/"):
        out = out[depth_to_space_order(config.scale)]
    return np.array(out, dtype=np.float32, order="C")  # a writable copy


def _check_complete(config: SRConfig, state: dict[str, torch.Tensor], scale: int) -> None:
    expected = {k: v.shape for k, v in build(config).state_dict().items()}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])[:5]
        raise PackageError(
            f"models/x{scale} does not fit an {config.architecture.upper()} of its shape: "
            f"missing {missing}, unexpected {extra}, wrong shape {wrong}"
        )


def decode_png(raw: bytes) -> np.ndarray:
    """HxWx3 uint8 RGB of a PNG (alpha dropped)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
