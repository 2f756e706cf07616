"""The /edit phrase table: free text -> steps, in the order written; unknown text named."""

from __future__ import annotations

import pytest

from jobs.errors import SchemaError
from producer.edit_phrases import (
    PHRASES,
    RESTORE_STEPS,
    UnknownInstruction,
    read_instructions,
    recipe_for,
    resize_step,
)


def ops(text: str, **kwargs: object) -> list[str]:
    return [step.op for step in recipe_for(text, **kwargs).steps]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("remove background", ["remove_background"]),
        ("Please smooth skin", ["skin_smooth"]),
        ("enhance skin and denoise", ["skin_smooth", "denoise"]),
        ("sharpen, then fix exposure", ["sharpen", "auto_levels"]),
        ("auto levels; white balance", ["auto_levels", "white_balance"]),
        ("make it black and white", ["convert"]),
        ("Remove dust and scratches", ["dust_scratch_removal"]),
        ("restore faded colours", ["restore_faded_color"]),
        ("brighten the photo a little", ["exposure"]),
    ],
)
def test_phrases_become_steps_in_the_order_written(text: str, expected: list[str]) -> None:
    assert ops(text) == expected


def test_restore_means_the_whole_restoration_recipe() -> None:
    assert ops("restore this old photo") == [s["op"] for s in RESTORE_STEPS]


def test_the_longest_phrase_wins() -> None:
    # "restore faded color" is one step, not the restoration recipe plus leftovers
    assert ops("restore faded color") == ["restore_faded_color"]
    assert ops("white background")[0] == "remove_background"
    step = recipe_for("white background").steps[0]
    assert step.params == {"background": "color"}


def test_unknown_text_is_refused_with_what_is_understood() -> None:
    with pytest.raises(UnknownInstruction) as caught:
        recipe_for("denoise and make the sky purple")
    assert caught.value.unknown == ["and make the sky purple"]
    assert "remove background" in str(caught.value)


def test_unknown_text_goes_to_the_edit_model_when_there_is_one() -> None:
    recipe = recipe_for("sharpen and add a hat", edit_op="kontext_edit")
    assert [s.op for s in recipe.steps] == ["sharpen", "kontext_edit"]
    assert recipe.steps[1].params["prompt"] == "and add a hat"
    whole = recipe_for("Turn the car red", edit_op="kontext_edit")
    assert whole.steps[0].params["prompt"] == "Turn the car red"  # the user's own words


def test_size_adds_a_final_resize() -> None:
    assert recipe_for("sharpen", "1024").steps[-1].params == {"max_side": 1024}
    assert recipe_for("sharpen", "800x600").steps[-1].params == {"width": 800, "height": 600}
    assert resize_step(None) is None
    for bad in ("big", "0", "99999x2", "10x"):
        with pytest.raises(SchemaError):
            resize_step(bad)


def test_every_phrase_builds_valid_steps() -> None:
    for phrase in PHRASES:
        reading = read_instructions(phrase.label)
        assert reading.steps and not reading.unknown, phrase.label
