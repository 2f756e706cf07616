"""One reader for every YAML/JSON file darkroom takes: errors name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import ConfigError, SchemaError
from jobs.settings import load_tiers
from jobs.yamlfile import load_file
from producer.schedule_config import load_schedules
from workers.autoscale.pools import load_pools


def test_yaml_and_json_files_give_the_same_data(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("tiers:\n  - name: cpu\n    vram_gb: 0\n")
    (tmp_path / "a.json").write_text('{"tiers": [{"name": "cpu", "vram_gb": 0}]}')
    assert load_file(tmp_path / "a.yaml") == load_file(tmp_path / "a.json")
    assert [t.name for t in load_tiers(tmp_path / "a.yaml")] == ["cpu"]


@pytest.mark.parametrize("loader", [load_schedules, load_pools, load_tiers])
def test_a_yaml_typo_names_the_file_and_its_line(tmp_path: Path, loader: object) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("a: 1\nb: [2, 3\nc: 4\n")
    with pytest.raises(ConfigError, match=r"conf\.yaml:\d+: not valid YAML"):
        loader(path)  # type: ignore[operator]


def test_a_missing_file_says_it_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.yaml: cannot read it"):
        load_schedules(tmp_path / "nothing.yaml")


def test_the_caller_picks_the_error_class(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"steps": [}')
    with pytest.raises(SchemaError, match=r"r\.json:1: not valid JSON"):
        load_file(path, SchemaError)
