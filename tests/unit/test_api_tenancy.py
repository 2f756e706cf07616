"""Pure logic behind "no tenant starves another": output-size caps, JSON depth, what a
tenant may see of storage, the per-key stream cap and the webhook senders' limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.errors import InputTooLarge
from jobs.schema import Recipe, Step
from jobs.settings import Settings
from producer.api.caps import check_output, planned_size
from producer.api.events import StreamSlots
from producer.api.requests import MAX_JSON_DEPTH, json_depth
from producer.api_keys import ApiKey, KeyLimits
from storage.public import public_link, redact
from workers.webhooks.senders import Senders


def recipe(*steps: tuple[str, dict[str, object]]) -> Recipe:
    return Recipe(steps=[Step(op=op, params=params) for op, params in steps])


def test_planned_size_follows_resize_and_never_grows_on_other_ops() -> None:
    stretch = recipe(("resize", {"width": 1000, "height": 1000, "fit": "stretch"}))
    assert planned_size(stretch, 16, 16) == (1000, 1000)
    by_width = recipe(("sharpen", {}), ("resize", {"width": 200}))
    assert planned_size(by_width, 100, 50) == (200, 100)
    shrink = recipe(("resize", {"max_side": 4000}), ("crop", {"aspect": "1:1"}))
    assert planned_size(shrink, 300, 200) == (300, 200)
    portrait = recipe(("identity_portrait", {"prompt": "a portrait", "max_side": 1024}))
    assert planned_size(portrait, 64, 64) == (1024, 1024)


def test_an_output_over_the_keys_pixel_cap_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    key = ApiKey(id="k", tenant="e", limits=KeyLimits(max_image_pixels=100_000))
    big = recipe(("resize", {"width": 1000, "height": 1000, "fit": "stretch"}))
    with pytest.raises(InputTooLarge, match="1000x1000"):
        check_output(big, (16, 16), key, settings)
    check_output(recipe(("resize", {"width": 300, "height": 300})), (16, 16), key, settings)


def test_json_depth_counts_nesting_without_recursion() -> None:
    assert json_depth(1) == 0
    assert json_depth({"a": [1, {"b": []}]}) == 4
    deep: object = []
    for _ in range(10_000):  # far past Python's recursion limit
        deep = [deep]
    assert json_depth(deep) == 10_001 > MAX_JSON_DEPTH


def test_a_tenant_sees_its_own_uri_forms_never_local_paths(tmp_path: Path) -> None:
    settings = Settings(output=str(tmp_path / "out"), home=tmp_path / "home")
    root = (tmp_path / "out").resolve()
    result = f"{root.as_uri()}/tenants/a/outputs/j1.webp"
    assert public_link(result, settings) == "/v1/outputs/tenants/a/outputs/j1.webp"
    assert public_link("s3://bucket/p/tenants/a/x.png", settings) == "s3://bucket/p/tenants/a/x.png"
    assert public_link("file:///etc/passwd", settings) is None
    message = f"input not found: {root.as_uri()}/tenants/a/uploads/x.png; cache {tmp_path}/home/m"
    shown = redact(message, settings)
    assert str(tmp_path) not in shown and "file://" not in shown
    assert "tenants/a/uploads/x.png" in shown


def test_event_streams_are_capped_per_key() -> None:
    slots = StreamSlots(per_key=2)
    assert slots.take("k1") and slots.take("k1")
    assert not slots.take("k1")
    assert slots.take("k2")  # another key has its own
    slots.give("k1")
    assert slots.take("k1")


def test_webhook_senders_are_limited_per_receiver_and_per_tenant() -> None:
    senders = Senders(per_receiver=2, per_tenant=3)
    slow = "https://1.2.3.4/hook/slow"
    assert senders.take("a", slow) and senders.take("a", slow)
    assert not senders.take("a", slow)  # the receiver is at its limit
    assert not senders.take("b", slow)  # ... whoever's job it is
    assert senders.take("a", "https://1.2.3.4/other")
    assert not senders.take("a", "https://1.2.3.4/third")  # tenant a has 3 open
    assert senders.take("b", "https://1.2.3.4/hook/ok")  # b is not held up
    senders.give("a", slow)
    assert senders.take("a", "https://1.2.3.4/third")
    assert senders.total() == 4
