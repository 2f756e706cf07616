"""The default variant rule, the `--variant` syntax and reading weight sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import SchemaError
from jobs.tiers import DEFAULT_TIERS
from model_store import default_variants, parse_variant
from model_store.folder import parameter_count, scan
from model_store.manifest import FileEntry
from tests.unit.test_model_store_fixtures import make_diffusers_folder, write_safetensors


def by_kind(params: int) -> dict[str, tuple[list[str], float]]:
    return {v.kind: (v.tiers, v.memory_gb) for v in default_variants(params, DEFAULT_TIERS)}


def test_a_tiny_model_gets_fp32_on_cpu_and_16_bit_everywhere_else() -> None:
    kinds = by_kind(1000)
    assert set(kinds) == {"fp32", "bf16", "fp16"}
    assert kinds["fp32"][0] == ["cpu"]
    assert kinds["bf16"][0] == ["a10", "a100"]
    assert kinds["fp16"][0] == ["edge"]  # 8 GB cards list no bf16


def test_a_flux_sized_model_gets_smaller_kinds_on_smaller_cards() -> None:
    kinds = by_kind(17_000_000_000)  # FLUX transformer + T5 + CLIP + VAE
    assert kinds["bf16"] == (["a100"], pytest.approx(38.0, abs=0.1))
    assert kinds["fp8"] == (["a10"], pytest.approx(19.0, abs=0.1))
    assert kinds["fp32"][1] == pytest.approx(76.0, abs=0.1)
    assert not any("edge" in tiers for tiers, _ in kinds.values())  # nf4 needs 9.5 GB


def test_an_sdxl_sized_model_runs_int8_on_edge_cards() -> None:
    kinds = by_kind(4_000_000_000)
    assert kinds["bf16"][0] == ["a10", "a100"]
    assert kinds["int8_weight_only"] == (["edge"], pytest.approx(4.47, abs=0.01))


def test_variant_syntax() -> None:
    spec = parse_variant("fp8:tiers=a10,a100:memory_gb=20")
    assert (spec.name, spec.kind, spec.tiers, spec.memory_gb) == (
        "fp8",
        "fp8",
        ["a10", "a100"],
        20.0,
    )
    assert parse_variant("int8").kind == "int8_weight_only"
    trt = parse_variant("trt-a10:tiers=a10:files=engine/a10.plan:compile=true:workspace_gb=4")
    assert (trt.kind, trt.files, trt.compile) == ("tensorrt", ["engine/a10.plan"], True)
    assert trt.options == {"workspace_gb": 4}
    assert parse_variant("fast:kind=bf16:compile=true").compile


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("fp8:tiers", "is not key=value"),
        ("mystery:tiers=a10", "give kind="),
        ("fp8:memory_gb=lots", "expected a number"),
        ("fp8:kind=fp4", "give kind="),
        ("bad name!", "variant name"),
    ],
)
def test_bad_variant_syntax_says_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(SchemaError, match=problem):
        parse_variant(spec)


def test_spec_fills_memory_and_tiers_from_the_weights() -> None:
    entries = [FileEntry(path="onnx/model.onnx", sha256="0" * 64, size=5)]
    variant = parse_variant("int8").build(4_000_000_000, entries, DEFAULT_TIERS)
    assert variant.memory_gb == pytest.approx(4.47, abs=0.01)
    assert variant.tiers == ["edge", "a10", "a100"]
    onnx = parse_variant("onnx:tiers=cpu:files=onnx/model.onnx").build(10, entries, DEFAULT_TIERS)
    assert onnx.files == entries
    with pytest.raises(SchemaError, match=r"files not in the folder: onnx/missing\.onnx"):
        parse_variant("onnx:tiers=cpu:files=onnx/missing.onnx").build(10, entries, DEFAULT_TIERS)


def test_parameters_are_read_from_safetensors_headers(tmp_path: Path) -> None:
    assert write_safetensors(tmp_path / "w.safetensors", {"a": [3, 5], "b": [7]}) == 22
    folder = make_diffusers_folder(tmp_path / "model", unet_side=64)
    entries = scan(folder)
    assert parameter_count(folder, entries) == 64 * 64 + 64 + 16 * 16 + 32 * 8
    assert not any(e.path.startswith(".cache") for e in entries)


def test_license_comes_from_the_model_card_front_matter(tmp_path: Path) -> None:
    from model_store.folder import license_of

    (tmp_path / "README.md").write_text("---\nlicense: apache-2.0\ntags: [x]\n---\n# Model\n")
    assert license_of(tmp_path) == "apache-2.0"
    (tmp_path / "README.md").write_text("# Model\nlicense: not front matter\n")
    assert license_of(tmp_path) is None
