"""vlsm.utils: the strict type check behind experiment-file validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import pytest

from vlsm.utils import fits_type, type_name, typed_dataclass_from_dict


@pytest.mark.parametrize("value, hint, fits", [
    (3, int, True), (True, int, False), (3.0, int, False), ("3", int, False),
    (3, float, True), (3.5, float, True), (False, float, False), ("3.5", float, False),
    (True, bool, True), (1, bool, False), ("yes", bool, False),
    ("a", str, True), (None, str, False),
    (None, Optional[int], True), (4, Optional[int], True), ("4", Optional[int], False),
    ("auto", Union[int, str], True), (2, Union[int, str], True), (2.0, Union[int, str], False),
    ([1, "x"], list[str], True), ((1,), list, False), ({}, dict, True), ([], dict, False),
    (object(), Any, True), (None, Any, True),
])
def test_fits_type_is_strict(value, hint, fits):
    assert fits_type(value, hint) is fits


def test_type_names_read_as_english():
    assert type_name(int) == "an integer" and type_name(float) == "a number"
    assert type_name(Optional[float]) == "a number or null" and type_name(list[str]) == "a list"
    assert type_name(Union[int, str]) == "an integer or a string" and type_name(bool) == "true or false"


@dataclass
class _Example:
    name: str
    size: int = 1
    tags: list = field(default_factory=list)


def test_typed_dataclass_from_dict_names_where_and_key():
    assert typed_dataclass_from_dict(_Example, {"name": "x", "size": 2}, "f.yaml", "ex") == _Example("x", 2)
    with pytest.raises(ValueError, match=r"^f.yaml: ex.size: expected an integer, got 2.5 \(float\)$"):
        typed_dataclass_from_dict(_Example, {"name": "x", "size": 2.5}, "f.yaml", "ex")
    with pytest.raises(ValueError, match=r"^f.yaml: ex: unknown key\(s\) \['colour'\]; valid keys: \['name', 'size', 'tags'\]$"):
        typed_dataclass_from_dict(_Example, {"name": "x", "colour": 1}, "f.yaml", "ex")
    with pytest.raises(ValueError, match=r"^f.yaml: ex: missing key\(s\) \['name'\]$"):
        typed_dataclass_from_dict(_Example, {}, "f.yaml", "ex")
    with pytest.raises(ValueError, match=r"^f.yaml: tags: expected a list, got 'a' \(str\)$"):
        typed_dataclass_from_dict(_Example, {"name": "x", "tags": "a"}, "f.yaml")
