"""The audit trail: append-only records chained by hash, so an edit is detectable (issue 4).

Each record names who (``actor``) did what (``action``) to what (``subject``) at ``t`` (the
caller's clock), with a JSON ``detail``. ``prev`` is the previous record's ``hash`` (64 zeros
for the first) and ``hash`` is SHA-256 (or HMAC-SHA-256 with a per-site key) over the canonical
JSON of every other field: sorted keys, no whitespace, UTF-8, floats as ``repr``. Changing,
deleting, inserting or reordering a record breaks the chain at that record; what a chain cannot
show by itself (a truncated or rewritten tail) is in docs/audit.md. Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rtls.errors import RtlsError

GENESIS = "0" * 64  # ``prev`` of the first record


class AuditError(RtlsError):
    """An audit record cannot be built (detail not JSON-able, time not finite, ...)."""


def canonical(body: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes of ``body``: sorted keys, no whitespace, UTF-8, floats as ``repr``
    (the :mod:`json` default), NaN and infinities refused."""
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)  # fmt: skip
    except (TypeError, ValueError) as exc:
        raise AuditError(f"audit record is not canonical JSON: {exc}") from exc
    return text.encode("utf-8")


def digest(body: Mapping[str, Any], key: bytes | None = None) -> str:
    """Hex SHA-256 of :func:`canonical` ``body``; HMAC-SHA-256 (RFC 2104) when ``key`` is given."""
    data = canonical(body)
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One link of the chain. ``detail`` is a plain JSON value (as read back from storage)."""

    seq: int
    t: float
    actor: str
    action: str
    subject: str
    detail: Mapping[str, Any]
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        """Every field but ``hash``: what the hash covers."""
        return {
            "seq": self.seq, "t": self.t, "actor": self.actor, "action": self.action,
            "subject": self.subject, "detail": dict(self.detail), "prev": self.prev,
        }  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditRecord:
        return cls(seq=d["seq"], t=d["t"], actor=d["actor"], action=d["action"],
                   subject=d["subject"], detail=dict(d["detail"]), prev=d["prev"],
                   hash=d["hash"])  # fmt: skip

    def expected_hash(self, key: bytes | None = None) -> str:
        return digest(self.body(), key)


def next_record(
    prev: AuditRecord | None, t: float, actor: str, action: str, subject: str,
    detail: Mapping[str, Any] | None = None, key: bytes | None = None,
) -> AuditRecord:  # fmt: skip
    """The record that follows ``prev`` (None: the first of a chain). ``detail`` is normalised
    through canonical JSON (tuples become lists, keys strings) so that the record equals what a
    reader decodes from storage."""
    t = float(t)
    if not math.isfinite(t):
        raise AuditError(f"audit record time must be finite, got {t!r}")
    for name, value in (("actor", actor), ("action", action), ("subject", subject)):
        if not isinstance(value, str) or not value:
            raise AuditError(f"audit record {name} must be a non-empty string, got {value!r}")
    plain = json.loads(canonical(dict(detail or {})))
    seq, link = (1, GENESIS) if prev is None else (prev.seq + 1, prev.hash)
    body = {"seq": seq, "t": t, "actor": actor, "action": action, "subject": subject,
            "detail": plain, "prev": link}  # fmt: skip
    return AuditRecord(seq, t, actor, action, subject, plain, link, digest(body, key))


class Problem(StrEnum):
    """Why a record fails verification."""

    HASH_MISMATCH = "hash mismatch"  # the record's fields do not give its hash (edited, wrong key)
    SEQ_GAP = "gap in seq"  # records missing before this one
    SEQ_ORDER = "seq out of order"  # a record repeated or moved back
    BROKEN_LINK = "broken link"  # prev is not the previous record's hash
    HEAD_MISSING = "head missing"  # the anchored head (published elsewhere) is not in the chain
    HEAD_MISMATCH = "head mismatch"  # the anchored head's seq holds another hash


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify`: ``ok``, the number of records read, the last good record's
    seq and hash, and for a failure the first bad record's seq (as stored), position (0-based)
    and the problem."""

    ok: bool
    count: int
    head_seq: int = 0
    head_hash: str = GENESIS
    bad_seq: int | None = None
    bad_index: int | None = None
    problem: Problem | None = None
    message: str = ""
    record: dict[str, Any] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.message


def verify(
    records: Iterable[AuditRecord], key: bytes | None = None,
    head: tuple[int, str] | None = None,
) -> VerifyResult:  # fmt: skip
    """Check a chain in seq order, streaming; stop at the first bad record.

    ``head``: an anchored ``(seq, hash)`` kept outside the database (docs/audit.md): the chain
    must contain that record with that hash, which detects a truncated or rewritten tail."""
    count, prev_hash, expected_seq, head_seen = 0, GENESIS, 1, False
    for i, r in enumerate(records):
        count = i + 1
        problem: Problem | None = None
        why = ""
        try:
            expected = r.expected_hash(key)
        except AuditError as exc:  # a field tampered into something JSON cannot hold
            expected = f"unhashable: {exc}"
        if not hmac.compare_digest(expected.encode(), r.hash.encode()):
            problem, why = Problem.HASH_MISMATCH, "its fields do not give its stored hash"
        elif r.seq > expected_seq:
            problem, why = Problem.SEQ_GAP, f"expected seq {expected_seq}: missing or moved"
        elif r.seq < expected_seq:
            problem, why = Problem.SEQ_ORDER, f"expected seq {expected_seq}"
        elif r.prev != prev_hash:
            problem, why = Problem.BROKEN_LINK, "prev is not the previous record's hash"
        elif head is not None and r.seq == head[0]:
            if r.hash != head[1]:
                problem, why = Problem.HEAD_MISMATCH, f"the anchored head has hash {head[1]}"
            head_seen = True
        if problem is not None:
            return VerifyResult(
                False, count, expected_seq - 1, prev_hash, r.seq, i, problem,
                f"record seq {r.seq} (#{i + 1}): {problem.value}: {why}", r.as_dict(),
            )  # fmt: skip
        prev_hash, expected_seq = r.hash, r.seq + 1
    last = expected_seq - 1
    if head is not None and not head_seen:
        return VerifyResult(
            False, count, last, prev_hash, head[0], count, Problem.HEAD_MISSING,
            f"anchored head seq {head[0]} is not in the chain (it ends at seq {last}): "
            "records were removed from the tail",
        )  # fmt: skip
    message = f"{count} record{'' if count == 1 else 's'} intact, head seq {last} {prev_hash}"
    return VerifyResult(True, count, last, prev_hash, message=message)
