"""Decoded arrays (rtls.decode_result): one row per advertisement."""

from __future__ import annotations

import numpy as np

from rtls.decode_result import TELEMETRY_DTYPE, unique_frames


def _tele(rows: list[tuple[float, int, int, int, int]]) -> np.ndarray:
    """Rows of (t, gateway, tag, seq, status); status2 0, battery 90."""
    out = np.zeros(len(rows), dtype=TELEMETRY_DTYPE)
    for i, (t, gw, tag, seq, status) in enumerate(rows):
        out[i] = (t, gw, tag, seq, status, 0, 90, 20)
    return out


def test_copies_of_one_advertisement_become_one_row_at_the_earliest_time() -> None:
    tele = _tele([
        (10.03, 2, 5, 7, 0x10),  # tag 5 seq 7 heard by three gateways, out of order
        (10.01, 0, 5, 7, 0x10),
        (10.02, 1, 5, 7, 0x10),
        (12.00, 0, 5, 8, 0x10),  # the next advertisement
        (10.00, 0, 3, 7, 0x00),  # another tag with the same seq
    ])  # fmt: skip
    out = unique_frames(tele)
    assert len(out) == 3
    assert out["tag"].tolist() == [3, 5, 5]
    assert out["seq"].tolist() == [7, 7, 8]
    assert out["t"].tolist() == [10.00, 10.01, 12.00]
    assert out["gateway"][2] == 0 and out["gateway"][1] in (0, 1, 2)


def test_same_sequence_number_with_other_flags_is_another_frame() -> None:
    # a tag that restarted, or a corrupted copy: the rules must see both bodies
    tele = _tele([(1.0, 0, 4, 9, 0x00), (1.1, 1, 4, 9, 0x01), (1.2, 2, 4, 9, 0x00)])
    tele["battery"][2] = 10
    out = unique_frames(tele)
    assert len(out) == 3
    assert sorted(out["status"].tolist()) == [0, 0, 1]


def test_small_empty_and_out_of_range_inputs_come_back_whole() -> None:
    assert len(unique_frames(np.zeros(0, dtype=TELEMETRY_DTYPE))) == 0
    one = _tele([(1.0, 0, 1, 1, 0)])
    assert unique_frames(one) is one
    odd = _tele([(1.0, 0, -1, 1, 0), (1.0, 1, -1, 1, 0)])  # unknown tag index: left alone
    assert len(unique_frames(odd)) == 2


def test_many_gateways_many_tags_match_a_set_of_identities() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    tele = np.zeros(n, dtype=TELEMETRY_DTYPE)
    tele["tag"] = rng.integers(0, 300, n)
    tele["seq"] = rng.integers(0, 4, n)
    tele["status"] = rng.integers(0, 2, n)
    tele["battery"] = 80
    tele["t"] = rng.random(n)
    tele["gateway"] = rng.integers(0, 8, n)
    out = unique_frames(tele)
    ident = {(int(r["tag"]), int(r["seq"]), int(r["status"])) for r in tele}
    assert len(out) == len(ident)
    for r in out[:200]:  # each frame at its earliest copy's time
        same = (tele["tag"] == r["tag"]) & (tele["seq"] == r["seq"])
        same &= tele["status"] == r["status"]
        assert r["t"] == tele["t"][same].min()
