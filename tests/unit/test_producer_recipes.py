"""Recipe files and --op flags: what is accepted, and how a mistake is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.errors import SchemaError
from producer.recipes import load_recipe, parse_op, parse_value, recipe_from_ops

RETOUCH = """\
name: retouch
steps:
  - denoise: {strength: 6}
  - op: resize
    params: {max_side: 2048}
  - auto_levels:
output:
  format: jpeg
  quality: 85
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_recipe_keeps_steps_in_order_with_shorthand_and_output(tmp_path: Path) -> None:
    loaded = load_recipe(write(tmp_path, "retouch.yaml", RETOUCH))
    assert loaded.recipe.name == "retouch"
    assert [s.op for s in loaded.recipe.steps] == ["denoise", "resize", "auto_levels"]
    assert loaded.recipe.steps[0].params == {"strength": 6}
    assert loaded.output == {"format": "jpeg", "quality": 85}


def test_json_recipe_is_the_same_recipe(tmp_path: Path) -> None:
    body = {
        "steps": [
            {"denoise": {"strength": 6}},
            {"op": "resize", "params": {"max_side": 2048}},
            {"auto_levels": None},
        ]
    }
    from_json = load_recipe(write(tmp_path, "r.json", json.dumps(body, indent=2)))
    from_yaml = load_recipe(write(tmp_path, "r.yaml", RETOUCH))
    assert from_json.recipe.digest() == from_yaml.recipe.digest()


def test_unknown_op_names_file_line_and_op(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", "steps:\n  - denoise: {}\n  - sparkle: {amount: 2}\n")
    with pytest.raises(SchemaError) as err:
        load_recipe(path)
    message = str(err.value)
    assert f"{path}:3" in message
    assert "sparkle" in message and "known ops" in message


def test_bad_param_names_line_op_and_param(tmp_path: Path) -> None:
    path = write(
        tmp_path, "r.yaml", "steps:\n  - resize: {max_side: 9}\n  - denoise: {strength: 99}\n"
    )
    with pytest.raises(SchemaError, match=r"r\.yaml:3 \(denoise\).*strength"):
        load_recipe(path)


def test_json_step_errors_name_the_line(tmp_path: Path) -> None:
    text = (
        '{\n  "steps": [\n    {"op": "denoise"},\n    {"op": "denoise", "params": {"x": 1}}\n  ]\n}'
    )
    with pytest.raises(SchemaError, match=r"r\.json:4 \(denoise\).*x"):
        load_recipe(write(tmp_path, "r.json", text))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "steps:\n  - denoise: {strength: 6\n", r"bad\.yaml:\d+: not valid YAML"),
        ("bad.json", '{"steps": [}', r"bad\.json:1: not valid JSON"),
        ("k.yaml", "steps: [denoise: {}]\nsteps_extra: 1\n", "unknown key.*steps_extra"),
        ("o.yaml", "steps: [denoise: {}]\noutput: {uri: s3://x}\n", "unknown output key.*uri"),
        ("e.yaml", "steps: []\n", "non-empty list"),
        ("f.yaml", "steps: [denoise: {}]\noutput: {format: gif}\n", "output.format: Input should"),
        ("l.yaml", "- denoise: {}\n", "mapping with a 'steps' list"),
    ],
)
def test_malformed_recipe_files_are_one_schema_error(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    with pytest.raises(SchemaError, match=expected):
        load_recipe(write(tmp_path, name, text))


def test_missing_recipe_file_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="cannot read"):
        load_recipe(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8", 8),
        ("-3", -3),
        ("0.5", 0.5),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("none", None),
        ("4:5", "4:5"),
        ("cover", "cover"),
    ],
)
def test_flag_values_are_typed(text: str, value: object) -> None:
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_ops_flags_build_a_recipe_in_order() -> None:
    loaded = recipe_from_ops(["denoise:strength=8", "resize:max_side=2048", "crop:aspect=4:5"])
    steps = loaded.recipe.steps
    assert [s.op for s in steps] == ["denoise", "resize", "crop"]
    assert steps[0].params == {"strength": 8}
    assert steps[2].params == {"aspect": "4:5"}


def test_op_without_params_and_with_several() -> None:
    assert parse_op("auto_levels").params == {}
    step = parse_op("sharpen:amount=1.5, radius=2,threshold=3")
    assert step.params == {"amount": 1.5, "radius": 2, "threshold": 3}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sparkle", "unknown op 'sparkle'"),
        ("denoise:strength", "'strength' is not key=value"),
        ("denoise:strength=99", "strength"),
        ("denoise:colour=1", "colour"),
        ("Denoise!", "expected NAME"),
    ],
)
def test_bad_op_flags_name_the_flag(spec: str, expected: str) -> None:
    with pytest.raises(SchemaError) as err:
        parse_op(spec)
    assert f"--op {spec!r}" in str(err.value)
    assert expected in str(err.value)


def test_no_ops_at_all_asks_for_a_recipe() -> None:
    with pytest.raises(SchemaError, match="--recipe FILE or at least one --op"):
        recipe_from_ops([])
