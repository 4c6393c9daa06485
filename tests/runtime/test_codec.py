"""The journal's JSON (runtime/codec.py): orjson, and the standard library for what it refuses."""

from __future__ import annotations

import json
import math
from decimal import Decimal

from sagac.runtime import codec


def test_what_orjson_refuses_is_still_written() -> None:
    big = {"n": 2**80, "m": -(2**70)}  # beyond 64 bits: orjson raises, json writes it
    assert json.loads(codec.dumps(big)) == big
    assert codec.size(big) == len(codec.dumps(big).encode())


def test_text_is_compact_utf8_with_string_keys_and_str_for_the_rest() -> None:
    text = codec.dumps({"a": [1, "é"], 2: None, "d": Decimal("1.5"), "x": math.nan})
    assert text == '{"a":[1,"é"],"2":null,"d":"1.5","x":null}'
    assert codec.size({"a": "é"}) == len('{"a":"é"}'.encode())


def test_loads_reads_its_own_text_and_the_nan_of_older_journals() -> None:
    value = {"k": [1, 2.5, True, None, "s"]}
    assert codec.loads(codec.dumps(value)) == value
    assert math.isnan(codec.loads('{"x": NaN}')["x"])
