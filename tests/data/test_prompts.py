"""Prompt selection (keys, list variants, random, fixed, missing keys) and prompt generation from masks."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vlsm.data.prompt_gen import colour_name, describe_mask, generate_prompts
from vlsm.data.prompts import PromptError, prompt_keys, select_prompt

PROMPTS = {"p0": "", "p1": "polyp", "p2": "round polyp", "p7": ["v1", "v2", "v3"]}


def test_fixed_keys():
    rng = np.random.default_rng(0)
    assert select_prompt(PROMPTS, "p1", rng) == "polyp"
    assert select_prompt(PROMPTS, "p0", rng) == ""


def test_list_valued_keys_are_sampled_reproducibly():
    draws = [select_prompt(PROMPTS, "p7", np.random.default_rng(s)) for s in range(40)]
    assert set(draws) == {"v1", "v2", "v3"}
    again = [select_prompt(PROMPTS, "p7", np.random.default_rng(s)) for s in range(40)]
    assert draws == again
    assert select_prompt(PROMPTS, "p7", None) == "v1"  # no rng: the first variant


def test_random_skips_p0_and_samples_within_lists():
    draws = {select_prompt(PROMPTS, "random", np.random.default_rng(s)) for s in range(200)}
    assert draws == {"polyp", "round polyp", "v1", "v2", "v3"}
    with pytest.raises(ValueError, match="random generator"):
        select_prompt(PROMPTS, "random", None)
    with pytest.raises(KeyError, match="no prompts p1..p9"):
        select_prompt({"p0": ""}, "random", np.random.default_rng(0), name="x")


def test_any_other_text_is_used_verbatim():
    assert select_prompt(PROMPTS, "a pink bump", np.random.default_rng(0)) == "a pink bump"
    assert select_prompt({}, "polyp") == "polyp"


def test_missing_key_names_record_and_available_keys():
    with pytest.raises(PromptError) as info:
        select_prompt(PROMPTS, "p9", np.random.default_rng(0), name="case_17")
    msg = str(info.value)
    assert "'case_17'" in msg and "'p9'" in msg and "available: p0, p1, p2, p7" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)


def test_bad_prompt_values():
    with pytest.raises(ValueError, match="non-empty list"):
        select_prompt({"p7": []}, "p7", np.random.default_rng(0))
    with pytest.raises(ValueError, match="text or a list"):
        select_prompt({"p1": 3}, "p1")


def test_prompt_keys_numeric_order():
    assert prompt_keys({"p10": 1, "p2": 1, "p0": 1, "other": 1}) == ["p0", "p2", "p10"]


# -- generation from masks ----------------------------------------------------------------------------
def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def test_generated_prompts_follow_medvlsm_wording():
    mask = _ellipse(90, 120, 45, 100, 12, 12)  # round, right, small
    image = np.zeros((90, 120, 3), np.uint8)
    image[mask] = (230, 205, 80)
    p = generate_prompts(mask, image, "polyp")
    assert p == {"p0": "", "p1": "polyp", "p2": "round polyp", "p3": "yellow round polyp",
                 "p4": "small yellow round polyp", "p5": "one small yellow round polyp",
                 "p6": "one small yellow round polyp, located in right of the image"}


def test_shape_size_number_location():
    oval = _ellipse(100, 100, 20, 20, 8, 18)
    d = describe_mask(oval)
    assert (d.shape, d.size, d.number, d.locations) == ("oval", "small", 1, ["top left"])
    big = _ellipse(100, 100, 50, 50, 40, 40)
    assert describe_mask(big).size == "large"
    medium = _ellipse(100, 100, 78, 50, 20, 20)
    assert describe_mask(medium).size == "medium" and describe_mask(medium).locations == ["bottom"]
    crescent = _ellipse(100, 100, 50, 50, 30, 30) & ~_ellipse(100, 100, 50, 70, 30, 30)
    assert describe_mask(crescent).shape == "irregular"
    two = _ellipse(100, 100, 20, 20, 10, 10) | _ellipse(100, 100, 80, 80, 12, 12)
    d2 = describe_mask(two)
    assert d2.number == 2 and d2.locations == ["bottom right", "top left"]  # largest first
    many = np.zeros((100, 100), bool)
    for i in range(5):
        many |= _ellipse(100, 100, 10 + 20 * i, 50, 4, 4)
    assert generate_prompts(many)["p5"].startswith("many ")
    speck = _ellipse(100, 100, 50, 50, 20, 20)
    speck[0, 0] = True  # a component under 5% of the largest one is not counted
    assert describe_mask(speck).number == 1


def test_empty_mask_and_descriptions():
    p = generate_prompts(np.zeros((10, 10), bool), None, "tumor", descriptions=["a lump"])
    assert p["p1"] == "tumor" and p["p2"] == p["p6"] == "no tumor" and p["p9"] == ["no tumor"]
    q = generate_prompts(_ellipse(50, 50, 25, 25, 10, 10), None, "polyp", descriptions=["a lump", "a bump"])
    assert q["p3"] == q["p2"] == "round polyp"  # no image: no colour
    assert q["p7"] == ["polyp which is a lump", "polyp which is a bump"]
    assert q["p9"][1] == "one medium round polyp which is a bump located in center of the image"


def test_colour_names():
    assert colour_name((250, 250, 250)) == "white"
    assert colour_name((200, 30, 30)) == "red"
    assert colour_name((135, 80, 45)) == "brown"


def test_vocabulary_matches_real_prompts(kvasir_root):
    """Our words for size/number/location are words medvlsm uses in Kvasir-SEG's prompts."""
    entries = json.loads((kvasir_root / "anns" / "train.json").read_text())
    text = " ".join(e["prompts"]["p6"] for e in entries)
    for word in ("small", "medium", "large", "one", "two", "three", "round", "oval", "located in",
                 "top left", "bottom right", "center", "of the image"):
        assert word in text


def test_is_prompt_key_for_every_number_and_nothing_else():
    from vlsm.data.prompts import is_prompt_key

    assert all(is_prompt_key(k) for k in ("p0", "p1", "p9", "p10", "p12", "p123"))
    assert not any(is_prompt_key(k) for k in ("p", "P1", "p1a", "p1\n", " p1", "polyp", "random", "", "p-1", 1))
    assert select_prompt({"p10": "tenth", "p1": "first"}, "p10") == "tenth"
    assert prompt_keys({"p1": 1, "p1\n": 1, 3: 1}) == ["p1"]
