"""Fixtures shared by every layer. Each fixture module under tests/fixtures/ is a plugin."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.photos",
    "tests.fixtures.workers",
    "tests.fixtures.tiny_models",
    "tests.fixtures.faults",
    "tests.fixtures.cli",
    "tests.fixtures.genai",
    "tests.fixtures.upscale",
]
