"""Tests for rtls.directory: site lookups, vectorised tag lookups, slugs, construction errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateways.formats import espresense_room
from rtls.advertisement import tag_address, tag_mac
from rtls.directory import UNKNOWN, Directory, address_key, address_keys, room_slug
from rtls.errors import ConfigError, PayloadError
from rtls.site import GatewayFormat, load_site

SITE = load_site()
DIRECTORY = Directory.from_site(SITE)


def test_from_site_indexes_every_gateway_tag_and_reader() -> None:
    for i, gw in enumerate(SITE.gateways):
        assert DIRECTORY.gateway(gw.id) == i
        assert DIRECTORY.omg_gateway(gw.id) == i
        if gw.format is GatewayFormat.ESPRESENSE:
            assert DIRECTORY.espresense_gateway(espresense_room(gw.id)) == i
    for i, tag in enumerate(SITE.tags):
        assert DIRECTORY.tag_for_serial(tag.serial) == i
        assert DIRECTORY.tag_for_address(tag_mac(tag.serial)) == i
        assert DIRECTORY.tag_serials[i] == tag.serial
    for i, reader in enumerate(SITE.door_readers):
        assert DIRECTORY.reader(reader.id) == i
        assert DIRECTORY.reader_doors[i] == reader.door
    assert DIRECTORY.gateway_ids == tuple(g.id for g in SITE.gateways)
    assert DIRECTORY.tag_ids == tuple(t.id for t in SITE.tags)


def test_unknown_identities_give_minus_one() -> None:
    assert DIRECTORY.gateway("nope") == UNKNOWN
    assert DIRECTORY.espresense_gateway("nope") == UNKNOWN
    assert DIRECTORY.omg_gateway("nope") == UNKNOWN
    assert DIRECTORY.reader("nope") == UNKNOWN
    assert DIRECTORY.tag_for_serial(0xFFFF_FFFE) == UNKNOWN
    assert DIRECTORY.tag_for_address("AA:BB:CC:DD:EE:FF") == UNKNOWN


def test_vectorised_lookups_mix_known_and_unknown() -> None:
    serials = np.array([t.serial for t in SITE.tags[:5]] + [0xDEAD_BEEF, -1, 1 << 40])
    expected = np.array([0, 1, 2, 3, 4, UNKNOWN, UNKNOWN, UNKNOWN], dtype=np.int32)
    np.testing.assert_array_equal(DIRECTORY.tags_for_serials(serials), expected)
    addresses = np.array(
        [list(tag_address(t.serial)) for t in SITE.tags[:5]]
        + [[0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF], list(tag_address(0xDEAD_BEEF)), [0] * 6],
        dtype=np.uint8,
    )
    found = DIRECTORY.tags_for_addresses(addresses)
    assert found.dtype == np.int32
    np.testing.assert_array_equal(found, expected)


def test_address_forms_agree() -> None:
    raw = bytes.fromhex("c0de00012345")
    key = 0xC0DE00012345
    assert address_key(raw) == key
    assert address_key("C0:DE:00:01:23:45") == key
    assert address_key("c0de00012345") == key
    assert address_key(key) == key
    np.testing.assert_array_equal(address_keys(np.frombuffer(raw, np.uint8)), [key])


@pytest.mark.parametrize("bad", ["C0:DE", "zz:de:00:01:23:45", -1, 1 << 48, b"\x00" * 5, True])
def test_bad_addresses_raise_bad_mac(bad: object) -> None:
    with pytest.raises(PayloadError) as info:
        address_key(bad)  # type: ignore[arg-type]
    assert info.value.reason == "bad_mac"


def test_extra_addresses_map_to_their_tag() -> None:
    d = Directory.build(
        tags=[("a", 10), ("b", 20)],
        extra_addresses={"11:22:33:44:55:66": "b", 0x665544332211: "a"},
    )
    assert d.tag_for_address("112233445566") == 1
    assert d.tag_for_address(bytes.fromhex("665544332211")) == 0
    assert d.tag_for_address(tag_mac(10)) == 0


def test_slug_collisions_prefer_the_espresense_gateway() -> None:
    d = Directory.build(gateways=[("a-b", "native"), ("a_b", "espresense"), ("c.d", "omg")])
    assert d.espresense_gateway("a_b") == 1
    assert d.espresense_gateway("c_d") == 2  # a lone slug belongs to its gateway
    d2 = Directory.build(gateways=[("a-b", "native"), ("a_b", "omg")])
    assert d2.espresense_gateway("a_b") == UNKNOWN  # ambiguous, and no ESPresense node owns it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"gateways": [("g", "native"), ("g", "omg")]}, "appears twice"),
        ({"gateways": [("a-b", "espresense"), ("a_b", "espresense")]}, "share the room slug"),
        ({"tags": [("t", 1), ("u", 1)]}, "share serial"),
        ({"tags": [("t", -1)]}, "not a u32"),
        ({"tags": [("t", 1)], "extra_addresses": {"112233445566": "x"}}, "unknown tag"),
        ({"tags": [("t", 1)], "extra_addresses": {"11:22": "t"}}, "extra address"),
        ({"tags": [("t", 1), ("u", 2)], "extra_addresses": {tag_mac(2): "t"}}, "another tag"),
        ({"readers": [("r", "d1"), ("r", "d2")]}, "appears twice"),
    ],
)
def test_bad_directories_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Directory.build(**kwargs)  # type: ignore[arg-type]


def test_empty_directory_knows_nothing() -> None:
    d = Directory.build()
    assert d.tags_for_serials(np.array([1, 2])).tolist() == [UNKNOWN, UNKNOWN]
    assert d.tags_for_addresses(np.zeros((3, 6), np.uint8)).tolist() == [UNKNOWN] * 3
    assert d.tags_for_addresses(np.zeros((0, 6), np.uint8)).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(
    serials=st.lists(st.integers(0, 0xFFFF_FFFF), min_size=0, max_size=40, unique=True),
    queries=st.lists(st.integers(0, 0xFFFF_FFFF), max_size=40),
)
def test_vectorised_lookup_matches_a_dict(serials: list[int], queries: list[int]) -> None:
    d = Directory.build(tags=[(f"t{i}", s) for i, s in enumerate(serials)])
    table = {s: i for i, s in enumerate(serials)}
    probe = queries + serials
    expected = [table.get(q, UNKNOWN) for q in probe]
    assert d.tags_for_serials(np.array(probe, dtype=np.int64)).tolist() == expected
    addresses = np.array([list(tag_address(q)) for q in probe], dtype=np.uint8).reshape(-1, 6)
    assert d.tags_for_addresses(addresses).tolist() == expected


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_room_slug_is_the_simulators_slug(name: str) -> None:
    try:
        expected = espresense_room(name)
    except PayloadError:
        with pytest.raises(ConfigError):
            room_slug(name)
        return
    assert room_slug(name) == expected
