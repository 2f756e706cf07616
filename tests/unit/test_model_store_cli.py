"""`darkroom models` through click's CliRunner, on a temporary local store."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from darkroom import models as models_cli
from darkroom.cli import main
from tests.unit.test_model_store_fixtures import make_diffusers_folder

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DARKROOM_CONFIG", raising=False)
    runner = CliRunner()
    where = ["--store", str(tmp_path / "store"), "--cache", str(tmp_path / "cache")]

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["models", *where, *args])

    return invoke


def test_publish_list_show_promote_rollback(run: Run, tmp_path: Path) -> None:
    src = make_diffusers_folder(tmp_path / "src")
    out = run(
        "publish", str(src), "--name", "pix2pix", "--version", "1",
        "--variant", "fp8:tiers=a10,a100:memory_gb=20", "--variant", "fp32:tiers=cpu",
        "--license", "openrail", "--alias", "stable",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "published pix2pix@1: 8 files" in out.output
    assert "fp8 (fp8, 20 GB) for a10, a100" in out.output
    assert "pix2pix@stable -> 1" in out.output

    (src / "unet" / "config.json").write_text('{"v": 2}')
    assert run("publish", str(src), "--name", "pix2pix", "--version", "2").exit_code == 0

    listing = run("list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].startswith("pix2pix@1") and lines[0].endswith("[stable]")
    assert lines[1].startswith("pix2pix@2")

    shown = json.loads(run("show", "pix2pix").output)
    assert (shown["version"], shown["license"]) == ("1", "openrail")

    assert run("promote", "pix2pix@2").output.strip() == "pix2pix@stable -> 2"
    assert json.loads(run("show", "pix2pix@stable").output)["version"] == "2"
    assert run("rollback", "pix2pix", "--alias", "stable").output.strip() == "pix2pix@stable -> 1"
    rows = [json.loads(line) for line in run("list", "--json").output.splitlines()]
    assert [(r["version"], r["aliases"]) for r in rows] == [("1", ["stable"]), ("2", [])]


def test_pull_verify_and_gc(run: Run, tmp_path: Path) -> None:
    src = make_diffusers_folder(tmp_path / "src")
    assert run("publish", str(src), "--name", "m", "--version", "1").exit_code == 0
    first = run("pull", "m@1")
    assert "downloaded" in first.output
    assert "already cached" in run("pull", "m@1").output
    assert run("verify").output.strip() == "m@1: ok"

    stored = tmp_path / "store" / "m" / "1" / "files" / "vae" / "config.json"
    stored.write_text('{"tampered": true}')
    bad = run("verify", "m@1")
    assert bad.exit_code == 1
    assert "vae/config.json does not match its sha256" in bad.output

    stray = tmp_path / "store" / "m" / "1" / "files" / "stray.bin"
    stray.write_bytes(b"left over")
    cache_only = run("gc", "--cache-only")
    assert cache_only.exit_code == 0
    assert stray.exists()
    gc = run("gc")
    assert gc.exit_code == 0
    assert "store: 1 unreferenced file(s) deleted" in gc.output
    assert "m/1/files/stray.bin" in gc.output
    assert not stray.exists()


def test_errors_are_one_line_and_exit_1(run: Run) -> None:
    missing = run("show", "kontext@stable")
    assert missing.exit_code == 1
    assert "Error: model kontext@stable is not in the model store" in missing.output
    assert "Traceback" not in missing.output
    bad_variant = run("publish", ".", "--name", "x", "--version", "1", "--variant", "fp8:tiers")
    assert bad_variant.exit_code == 1
    assert "is not key=value" in bad_variant.output


def test_lazy_commands_are_listed_without_being_imported(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        models_cli.LAZY_COMMANDS, "make-tiny", ("no_such_module:make_tiny", "build tiny models")
    )
    helped = run("--help")
    assert helped.exit_code == 0
    assert "make-tiny" in helped.output and "build tiny models" in helped.output
    monkeypatch.setitem(models_cli.LAZY_COMMANDS, "down", ("darkroom.local:down", "stop redis"))
    lazy = run("down", "--help")  # imported only now, and runs as a models subcommand
    assert lazy.exit_code == 0
    assert "Stop the embedded Redis" in lazy.output


def test_the_models_command_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, darkroom.models, model_store.store; "
        "print(sorted(m for m in ('torch', 'diffusers', 'pipelines') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
