"""The hash-chained audit trail (pure): building, verifying, and what tampering looks like."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace

import pytest

from rtls.audit import (
    GENESIS,
    AuditError,
    AuditRecord,
    Problem,
    canonical,
    digest,
    next_record,
    verify,
)

KEY = b"site-secret-0123456789"


def chain(n: int, key: bytes | None = None) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    prev = None
    for i in range(n):
        prev = next_record(prev, 100.0 + i * 0.1, f"nurse{i % 3}", "alarm.acknowledge",
                           f"exit:B{i:02d}", {"alarm_id": i + 1, "note": "é"}, key)  # fmt: skip
        out.append(prev)
    return out


def rehash(r: AuditRecord, key: bytes | None = None) -> AuditRecord:
    """What an attacker without the key does after editing: recompute the record's hash."""
    return replace(r, hash=digest(r.body(), key))


def test_chain_links_and_hashes() -> None:
    recs = chain(5)
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(recs))
    # the hash is SHA-256 of the canonical JSON of every other field
    body = json.dumps(recs[2].body(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert recs[2].hash == hashlib.sha256(body.encode()).hexdigest()
    assert b" " not in canonical({"b": 1, "a": [1.5, 2]})
    assert canonical({"b": 1, "a": 0.1}) == b'{"a":0.1,"b":1}'
    res = verify(recs)
    assert res.ok, res.message
    assert (res.count, res.head_seq, res.head_hash) == (5, 5, recs[-1].hash)


def test_detail_is_normalised_like_storage() -> None:
    r = next_record(None, 1, "u", "a", "s", {"xs": (1, 2), "n": {3: "k"}})
    assert r.detail == {"xs": [1, 2], "n": {"3": "k"}}
    assert isinstance(r.t, float)
    again = AuditRecord.from_dict(json.loads(json.dumps(r.as_dict())))
    assert again == r
    assert verify([again]).ok


@pytest.mark.parametrize(
    ("detail", "t", "actor"),
    [
        ({"x": float("nan")}, 1.0, "u"),
        ({"x": object()}, 1.0, "u"),
        ({1: 0, "a": 0}, 1.0, "u"),
        ({}, float("inf"), "u"),
        ({}, 1.0, ""),
    ],
)
def test_bad_records_are_refused(detail: dict[str, object], t: float, actor: str) -> None:
    with pytest.raises(AuditError):
        next_record(None, t, actor, "a", "s", detail)


def test_changed_field_is_a_hash_mismatch() -> None:
    recs = chain(6)
    recs[3] = replace(recs[3], actor="intruder")
    res = verify(recs)
    assert not res.ok
    assert (res.problem, res.bad_seq, res.bad_index) == (Problem.HASH_MISMATCH, 4, 3)
    assert res.head_seq == 3
    assert res.record is not None and res.record["actor"] == "intruder"
    # re-hashing the edited record moves the failure to the next link
    recs[3] = rehash(recs[3])
    res = verify(recs)
    assert (res.problem, res.bad_seq) == (Problem.BROKEN_LINK, 5)


def test_changed_detail_is_found() -> None:
    recs = chain(3)
    recs[1] = replace(recs[1], detail={**recs[1].detail, "note": "edited"})
    assert verify(recs).problem is Problem.HASH_MISMATCH


def test_deleted_record_is_a_gap() -> None:
    recs = chain(6)
    del recs[2]
    res = verify(recs)
    assert (res.ok, res.problem, res.bad_seq, res.bad_index) == (
        False, Problem.SEQ_GAP, 4, 2)  # fmt: skip


def test_deleted_and_renumbered_is_a_broken_link() -> None:
    recs = chain(6)
    del recs[2]
    recs[2:] = [rehash(replace(r, seq=r.seq - 1)) for r in recs[2:]]
    res = verify(recs)
    assert (res.problem, res.bad_seq) == (Problem.BROKEN_LINK, 3)


def test_reordered_pair_is_found() -> None:
    recs = chain(6)
    recs[2], recs[3] = recs[3], recs[2]
    res = verify(recs)
    assert not res.ok
    assert (res.problem, res.bad_index) == (Problem.SEQ_GAP, 2)
    # renumbered to hide the swap: the links no longer match
    recs[2], recs[3] = rehash(replace(recs[2], seq=3)), rehash(replace(recs[3], seq=4))
    res = verify(recs)
    assert (res.problem, res.bad_seq) == (Problem.BROKEN_LINK, 3)


def test_duplicated_record_is_out_of_order() -> None:
    recs = chain(4)
    recs.insert(2, recs[1])
    assert verify(recs).problem is Problem.SEQ_ORDER


def test_changed_prev_is_found() -> None:
    recs = chain(5)
    recs[2] = replace(recs[2], prev="f" * 64)
    assert (verify(recs).problem, verify(recs).bad_seq) == (Problem.HASH_MISMATCH, 3)
    recs[2] = rehash(recs[2])
    assert (verify(recs).problem, verify(recs).bad_seq) == (Problem.BROKEN_LINK, 3)


def test_truncated_tail_needs_the_anchored_head() -> None:
    recs = chain(8)
    anchored = (recs[5].seq, recs[5].hash)
    assert verify(recs, head=anchored).ok
    short = recs[:4]
    assert verify(short).ok  # a plain chain cannot see a cut tail
    res = verify(short, head=anchored)
    assert (res.ok, res.problem) == (False, Problem.HEAD_MISSING)
    # a rewritten tail (edit record 5, re-hash everything after) passes alone, not with the head
    forged = recs[:4]
    for r in recs[4:]:
        forged.append(next_record(forged[-1], r.t, "forger", r.action, r.subject, r.detail))
    assert verify(forged).ok
    res = verify(forged, head=anchored)
    assert (res.problem, res.bad_seq) == (Problem.HEAD_MISMATCH, 6)


def test_hmac_chain() -> None:
    recs = chain(5, KEY)
    assert verify(recs, KEY).ok
    assert recs[0].hash != chain(5)[0].hash
    # without the key (or with another) nothing verifies
    assert verify(recs).problem is Problem.HASH_MISMATCH
    assert verify(recs, b"other").bad_seq == 1
    # an attacker who edits and re-hashes without the key is found at once
    recs[2] = rehash(replace(recs[2], actor="intruder"))
    res = verify(recs, KEY)
    assert (res.problem, res.bad_seq) == (Problem.HASH_MISMATCH, 3)
    # and a full plain-SHA rewrite ("downgrade") fails under the key from the first record
    plain = chain(5)
    assert verify(plain, KEY).bad_seq == 1


def test_empty_chain_is_intact() -> None:
    res = verify([])
    assert (res.ok, res.count, res.head_hash) == (True, 0, GENESIS)
    assert verify([], head=(1, "a" * 64)).problem is Problem.HEAD_MISSING
