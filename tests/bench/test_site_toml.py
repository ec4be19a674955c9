"""bench/site_toml.py: a site mapping written as TOML reads back as the same mapping."""

from __future__ import annotations

import tomllib

import pytest

from bench import simdata
from bench.site_toml import to_toml
from rtls.errors import RtlsError


def test_the_example_site_round_trips() -> None:
    data = simdata.example_data()
    assert tomllib.loads(to_toml(data)) == data


def test_keys_needing_quotes_and_nested_tables_round_trip() -> None:
    data = {"id": 'a "b"', "x": {"y": {"weird key": 1.5, "ok": True}},
            "t": [{"p": [[0.0, 1.0], [2.0, 3.0]], "q": {"r": "s"}}]}  # fmt: skip
    assert tomllib.loads(to_toml(data)) == data


def test_a_value_toml_cannot_hold_is_refused() -> None:
    with pytest.raises(RtlsError, match="cannot write"):
        to_toml({"x": None})
