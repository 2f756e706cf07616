"""The catalogue's rule for a job's extra images (`jobs.ops.check_extra_inputs`)."""

from __future__ import annotations

import pytest

from jobs.errors import SchemaError
from jobs.ops import CATALOGUE, check_extra_inputs
from jobs.ops.multi_identity import MAX_PEOPLE


def test_no_extra_images_suit_every_recipe() -> None:
    for name in CATALOGUE:
        check_extra_inputs([(name, {})], 0)


def test_ops_that_read_none_refuse_them_and_name_the_ops_that_do() -> None:
    with pytest.raises(SchemaError, match=r"^op 'resize' takes no extra inputs") as one:
        check_extra_inputs([("resize", {})], 1)
    assert "multi_identity" in str(one.value) and "qwen_edit" in str(one.value)
    with pytest.raises(SchemaError, match="none of the ops 'crop', 'sharpen' takes"):
        check_extra_inputs([("crop", {}), ("sharpen", {}), ("crop", {})], 2)


def test_multi_identity_takes_up_to_four_people_in_all() -> None:
    check_extra_inputs([("multi_identity", {})], MAX_PEOPLE - 1)
    with pytest.raises(SchemaError, match=r"5 images in all.*") as crowd:
        check_extra_inputs([("multi_identity", {})], MAX_PEOPLE)
    assert "1-4 people" in str(crowd.value)


def test_a_recipe_with_several_readers_is_held_to_the_smallest() -> None:
    check_extra_inputs([("resize", {}), ("qwen_edit", {})], 2)  # a non-reader beside is fine
    with pytest.raises(SchemaError, match="'inpaint' takes at most 1"):
        check_extra_inputs([("qwen_edit", {}), ("inpaint", {"prompt": "a hat"})], 2)


def test_ops_that_read_an_extra_image_only_under_some_params_say_so() -> None:
    check_extra_inputs([("remove_background", {"background": "image"})], 1)
    with pytest.raises(SchemaError, match=r"with these params .*background='image'"):
        check_extra_inputs([("remove_background", {})], 1)
    check_extra_inputs([("inpaint", {"prompt": "a hat"})], 1)  # the mask
    with pytest.raises(SchemaError, match="'inpaint' takes no extra inputs with these params"):
        check_extra_inputs([("inpaint", {"prompt": "a hat", "box": [0, 0, 8, 8]})], 1)


def test_every_op_that_reads_extra_images_says_what_they_are() -> None:
    readers = {name for name, spec in CATALOGUE.items() if spec.extra_inputs}
    assert {"multi_identity", "qwen_edit", "identity_portrait", "gemini_edit"} <= readers
    assert all(CATALOGUE[name].extra_role for name in readers)


def test_a_multi_identity_output_is_capped_at_its_max_side_whatever_the_photos() -> None:
    from jobs.schema import Recipe, Step
    from producer.api.caps import planned_size

    step = Step(op="multi_identity", params={"prompt": "friends", "max_side": 1024})
    assert planned_size(Recipe(steps=[step]), 64, 64) == (1024, 1024)
