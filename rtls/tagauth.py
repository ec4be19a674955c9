"""Tag authentication: the rolling code of each advertisement, verified against per-tag keys.

A keyed tag puts in body bytes 12-19 the first 8 bytes of HMAC-SHA256 (RFC 2104; truncation per
NIST SP 800-107 rev. 1, 5.3) of body bytes 0-11 followed by the high 16 bits of its 32-bit
counter, little-endian. The low 16 bits are the body's ``sequence``; the receiver rebuilds the
high bits from the last counter it accepted (LoRaWAN 1.0's FCnt), so a 16-bit wrap never
reopens old codes. :class:`TagAuth` holds the key table and the per-tag counter state as
arrays and filters a :class:`~rtls.decode_result.Decoded` before anything reads it: rejected
observations and telemetry rows are dropped (never located, never seen by the rules), counted
by reason, listed per tag, and those that show an attack are kept for the ``tag_spoofing``
alarm (:mod:`rtls.spoofing`). Only the unique advertisements of a batch are verified (one MAC
per advertisement, not per gateway that heard it). Rules and their reasons: docs/tag-auth.md.

Pure apart from a lock: every call takes ``now`` (engine receive time); the lock lets the
service's early pass (check only) run beside a tick (check and commit) in another thread.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rtls.advertisement import BODY_DTYPE, BODY_SIZE, PROTOCOL_VERSION, SIGNED_SIZE
from rtls.decode_result import Decoded
from rtls.errors import RtlsError
from rtls.site import SecurityParams

KEY_SIZE: Final = 16
MAC_SIZE: Final = 8
EPOCHS_AHEAD: Final = 3  # re-sync: a counter up to this many 65,536-blocks ahead is searched
LATE_SKEW_S: Final = 0.5  # gateway clocks agree this well: "heard no later than the original"
_BLOCK: Final = 1 << 16
_HASH_BLOCK: Final = 64  # SHA-256 block size (RFC 2104's B)

#: Verdict codes per row; 0 accepted. Alarm reasons: replay, bad_mac, unauthenticated (keyed
#: tag whose key the tag has already used). ``late``: a genuine copy delivered after the
#: window (a slow gateway), dropped without alarm. ``unverifiable``: an observation without
#: an advertisement body (ESPresense) of a keyed tag.
REASONS: Final = ("ok", "replay", "bad_mac", "unauthenticated", "late", "unverifiable")
OK, REPLAY, BAD_MAC, UNAUTHENTICATED, LATE, UNVERIFIABLE = range(6)
ALARM_REASONS: Final = frozenset({REPLAY, BAD_MAC, UNAUTHENTICATED})

#: One rejected observation that shows an attack: engine time, tag, gateway, RSSI, reason.
SPOOF_DTYPE: Final = np.dtype(
    [("t", "<f8"), ("tag", "<i4"), ("gateway", "<i4"), ("rssi", "<f4"), ("reason", "u1")]
)
EMPTY_SPOOF: Final = np.zeros(0, dtype=SPOOF_DTYPE)
EMPTY_SPOOF.flags.writeable = False
# odd 64-bit multipliers (splitmix64 / golden ratio) to bucket bodies before an exact check
_MIX: Final = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9),
               np.uint64(0x94D049BB133111EB))  # fmt: skip


class TagAuthError(RtlsError):
    """A key or counter that cannot be used (wrong size, unknown tag)."""


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise TagAuthError(f"a tag key is {KEY_SIZE} bytes")
    return bytes(key)


def _pads(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hash states after the padded key (RFC 2104, step 1-2)."""
    k = _check_key(key).ljust(_HASH_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
    return inner, outer


def _message(signed: bytes | bytearray, counter: int) -> bytes:
    return bytes(signed[:SIGNED_SIZE]) + ((counter >> 16) & 0xFFFF).to_bytes(2, "little")


class Signer:
    """One key's HMAC state, prepared once (a code then costs two SHA-256 blocks)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        self._inner, self._outer = _pads(key)

    def code(self, signed: bytes | bytearray, counter: int) -> bytes:
        """The 8-byte code of body bytes 0-11 ``signed`` at 32-bit ``counter``."""
        if len(signed) < SIGNED_SIZE or not 0 <= counter <= 0xFFFF_FFFF:
            raise TagAuthError("a code needs body bytes 0-11 and a u32 counter")
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(_message(signed, counter))
        outer.update(inner.digest())
        return bytes(outer.digest()[:MAC_SIZE])


def auth_code(key: bytes, signed: bytes, counter: int) -> bytes:
    """The 8-byte code of body bytes 0-11 ``signed`` at 32-bit ``counter`` under ``key``."""
    return Signer(key).code(signed, counter)


def sign_body(key: bytes, body: bytes, counter: int) -> bytes:
    """``body`` (20 bytes) with its auth field set for ``counter``, whose low 16 bits must be
    the body's sequence (bytes 5-6)."""
    if len(body) != BODY_SIZE:
        raise TagAuthError(f"a body is {BODY_SIZE} bytes")
    if int.from_bytes(body[5:7], "little") != counter & 0xFFFF:
        raise TagAuthError(f"counter {counter} does not end in the body's sequence")
    return bytes(body[:SIGNED_SIZE]) + auth_code(key, body, counter)


class TagAuth:
    """Key table and replay state of the site's N tags (site order).

    State arrays (read, never write): ``keyed`` (N,), ``last`` / ``prev`` (N,) int64 the newest
    and the one before accepted counters (-1: none), ``last_now`` / ``prev_now`` engine time of
    their first acceptance, ``last_obs`` / ``prev_obs`` the gateway time they were heard, and
    ``rejected`` (N, len(REASONS)) counts per tag and reason."""

    def __init__(self, n_tags: int, params: SecurityParams | None = None) -> None:
        self.params = p = params or SecurityParams()
        self.n = n_tags
        self.window_s = p.repeat_window_s
        self.keyed = np.zeros(n_tags, dtype=bool)
        self.last = np.full(n_tags, -1, dtype=np.int64)
        self.prev = np.full(n_tags, -1, dtype=np.int64)
        self.last_now = np.full(n_tags, -np.inf)
        self.prev_now = np.full(n_tags, -np.inf)
        self.last_obs = np.full(n_tags, -np.inf)
        self.prev_obs = np.full(n_tags, -np.inf)
        self.rejected = np.zeros((n_tags, len(REASONS)), dtype=np.int64)
        self.last_reject_t = np.full(n_tags, np.nan)
        self.last_reason = np.zeros(n_tags, dtype=np.uint8)
        self.last_gateway = np.full(n_tags, -1, dtype=np.int32)
        self.counts: Counter[str] = Counter()  # rows by verdict, plus "unauthenticated_accepted"
        self.macs = 0  # MAC computations (the cost: one per unique advertisement, usually)
        self._pads: list[tuple[Any, Any] | None] = [None] * n_tags
        self._spoof: list[NDArray[np.void]] = []
        self._dirty: set[int] = set()  # counters changed since take_counters()
        self._lock = threading.Lock()

    # -- keys --------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """False while no tag has a key and unkeyed tags are accepted: :meth:`filter` is a no-op."""
        return bool(self.params.require_tag_auth or self.keyed.any())

    def set_key(self, tag: int, key: bytes, counter: int = -1) -> None:
        """Give tag index ``tag`` its key and the last counter accepted under it (-1: none yet,
        a new key: the tag's first verified advertisement sets it; until then failures are
        dropped without alarm)."""
        self._tag(tag)
        pads = _pads(key)
        if not -1 <= counter <= 0xFFFF_FFFF:
            raise TagAuthError(f"counter {counter} is not a u32 (or -1)")
        with self._lock:
            self._pads[tag] = pads
            self.keyed[tag] = True
            self.last[tag], self.prev[tag] = counter, -1
            self.last_now[tag] = self.prev_now[tag] = -np.inf
            self.last_obs[tag] = self.prev_obs[tag] = -np.inf

    def revoke(self, tag: int) -> None:
        """Forget tag ``tag``'s key and counters (it is accepted as unauthenticated again unless
        the site requires authentication)."""
        self._tag(tag)
        with self._lock:
            self._pads[tag] = None
            self.keyed[tag] = False
            self.last[tag] = self.prev[tag] = -1
            self._dirty.discard(tag)

    def _tag(self, tag: int) -> None:
        if isinstance(tag, bool) or not 0 <= int(tag) < self.n:
            raise TagAuthError(f"tag index {tag!r} is not one of the site's {self.n} tags")

    def take_counters(self) -> dict[int, int]:
        """Counters accepted since the last call, per tag index (to persist them)."""
        with self._lock:
            out = {i: int(self.last[i]) for i in self._dirty if self.keyed[i]}
            self._dirty.clear()
        return out

    def take_spoofing(self) -> NDArray[np.void]:
        """Rejected observations that show an attack (SPOOF_DTYPE), since the last call."""
        with self._lock:
            parts, self._spoof = self._spoof, []
        return np.concatenate(parts) if parts else EMPTY_SPOOF

    # -- filtering ---------------------------------------------------------------------------
    def filter(self, decoded: Decoded, now: float, *, commit: bool = True) -> Decoded:
        """``decoded`` without the observations and telemetry rows that fail authentication.

        ``commit`` False (the early pass): check against the state without changing it,
        counting or recording anything; the tick that ingests the same messages commits."""
        obs, tel = decoded.obs, decoded.telemetry
        if not (len(obs) or len(tel)):
            return decoded
        if not self.active:
            if commit:
                self.counts["unauthenticated_accepted"] += len(obs)
            return decoded
        n_obs = len(obs)
        # a native batch's rows: each observation and telemetry row is the same record
        aligned = decoded.obs_body is decoded.telemetry_body and n_obs == len(tel)
        if aligned:
            tags = obs["tag"].astype(np.intp)
            bodies = _bodies(decoded.obs_body, n_obs)
            seen = obs["t"]
        else:
            tags = np.concatenate([obs["tag"], tel["tag"]]).astype(np.intp)
            bodies = np.concatenate([_bodies(decoded.obs_body, n_obs),
                                     _bodies(decoded.telemetry_body, len(tel))])  # fmt: skip
            seen = np.concatenate([obs["t"], tel["t"]])
        with self._lock:
            code, alarm = self._verdict(tags, bodies, seen, float(now), commit)
            if commit:
                self._record(code, alarm, obs, tags[:n_obs], float(now))
        keep_obs = code[:n_obs] == OK
        keep_tel = keep_obs if aligned else code[n_obs:] == OK
        if keep_obs.all() and keep_tel.all():
            return decoded
        return Decoded(obs=obs[keep_obs], telemetry=tel[keep_tel], reads=decoded.reads,
                       status=decoded.status, unknown=decoded.unknown,
                       obs_body=_keep(decoded.obs_body, keep_obs),
                       telemetry_body=_keep(decoded.telemetry_body, keep_tel))  # fmt: skip

    def _verdict(
        self, tags: NDArray[np.intp], bodies: NDArray[np.void], seen: NDArray[np.float64],
        now: float, commit: bool,
    ) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:  # fmt: skip
        """Verdict per row and whether it counts for the spoofing alarm."""
        p = self.params
        code = np.zeros(len(tags), dtype=np.uint8)
        has_body = (bodies["version_kind"] >> 4) == PROTOCOL_VERSION
        auth = np.ascontiguousarray(bodies["auth"]).view("<u8").reshape(-1)
        signed = has_body & (auth != 0)
        keyed = self.keyed[tags]
        if p.require_tag_auth:
            code[~keyed & has_body] = UNAUTHENTICATED
            code[~keyed & ~has_body] = UNVERIFIABLE
        if not p.accept_unverifiable:
            code[keyed & ~has_body] = UNVERIFIABLE
        code[keyed & has_body & ~signed] = UNAUTHENTICATED
        rows = np.flatnonzero(keyed & signed)
        if len(rows):
            code[rows] = self._check(tags[rows], bodies[rows], seen[rows], now, commit)
        confirmed = self.last[tags] >= 0  # the tag has used its key: failures are attacks
        alarm = (
            keyed & confirmed & ((code == REPLAY) | (code == BAD_MAC) | (code == UNAUTHENTICATED))
        )
        return code, alarm

    def _check(
        self, tags: NDArray[np.intp], bodies: NDArray[np.void], seen: NDArray[np.float64],
        now: float, commit: bool,
    ) -> NDArray[np.uint8]:  # fmt: skip
        """Signed bodies of keyed tags: unique advertisements, one MAC each, replay rules."""
        raw = np.ascontiguousarray(bodies).view(np.uint8).reshape(-1, BODY_SIZE)
        first, inverse = _unique_rows(tags, raw)
        u_tag = tags[first]
        u_seen = np.full(len(first), np.inf)
        np.minimum.at(u_seen, inverse, seen)
        counter = self._counters(u_tag, raw[first])
        L, P = self.last[u_tag], self.prev[u_tag]
        ok = counter > L
        same_last = (counter == L) & (counter >= 0)
        same_prev = (counter == P) & (counter >= 0) & ~same_last
        w = self.window_s
        ok |= same_last & (now - self.last_now[u_tag] <= w)
        ok |= same_prev & (now - self.prev_now[u_tag] <= w)
        ref = np.where(same_prev, self.prev_obs[u_tag], self.last_obs[u_tag])
        late = u_seen <= ref + LATE_SKEW_S  # heard no later than the original: delivered late
        verdict = np.where(ok, OK, np.where(late, LATE, REPLAY)).astype(np.uint8)
        verdict[counter < 0] = BAD_MAC
        if commit:
            self._advance(u_tag[ok & (counter > L)], counter[ok & (counter > L)],
                          u_seen[ok & (counter > L)], now)  # fmt: skip
        out: NDArray[np.uint8] = verdict[inverse]
        return out

    def _counters(self, tag: NDArray[np.intp], raw: NDArray[np.uint8]) -> NDArray[np.int64]:
        """The verified 32-bit counter of each unique advertisement (-1: no candidate verifies).

        Candidates, in order: the nearest counter at or after the last accepted one with these
        low bits, the one 65,536 before it (a replay), then up to EPOCHS_AHEAD blocks further
        ahead (re-sync after a long absence)."""
        seq = raw[:, 5].astype(np.int64) | (raw[:, 6].astype(np.int64) << 8)
        last = self.last[tag]
        base = np.maximum(last, 0)
        forward = base + ((seq - base) & 0xFFFF)
        # the messages of the first candidates at once: bytes 0-11 + high 16 bits, 14 bytes each
        msg = np.empty((len(tag), SIGNED_SIZE + 2), dtype=np.uint8)
        msg[:, :SIGNED_SIZE] = raw[:, :SIGNED_SIZE]
        msg[:, SIGNED_SIZE:] = (
            ((forward >> 16) & 0xFFFF).astype("<u2").view(np.uint8).reshape(-1, 2)
        )
        msgs, codes = msg.tobytes(), np.ascontiguousarray(raw[:, SIGNED_SIZE:]).tobytes()
        out = np.full(len(tag), -1, dtype=np.int64)
        pads = self._pads
        m, a = SIGNED_SIZE + 2, MAC_SIZE
        failed: list[int] = []
        good = np.zeros(len(tag), dtype=bool)
        for k, t in enumerate(tag.tolist()):
            pair = pads[t]
            if pair is None:
                continue
            inner, outer = pair[0].copy(), pair[1].copy()
            inner.update(msgs[k * m : k * m + m])
            outer.update(inner.digest())
            if outer.digest()[:a] == codes[k * a : k * a + a]:
                good[k] = True
            else:
                failed.append(k)
        self.macs += len(tag)
        out[good] = forward[good]
        for k in failed:  # a replay from an older block, or a re-sync, or a forgery
            pair = pads[int(tag[k])]
            assert pair is not None
            head, code, fwd = msgs[k * m : k * m + SIGNED_SIZE], codes[k * a : k * a + a], int(
                forward[k])  # fmt: skip
            for c in (fwd - _BLOCK, *[fwd + j * _BLOCK for j in range(1, EPOCHS_AHEAD + 1)]):
                if not 0 <= c <= 0xFFFF_FFFF:
                    continue
                self.macs += 1
                inner, outer = pair[0].copy(), pair[1].copy()
                inner.update(head + ((c >> 16) & 0xFFFF).to_bytes(2, "little"))
                outer.update(inner.digest())
                if outer.digest()[:a] == code:
                    out[k] = c
                    break
        return out

    def _advance(
        self, tag: NDArray[np.intp], counter: NDArray[np.int64], seen: NDArray[np.float64],
        now: float,
    ) -> None:  # fmt: skip
        """Newly accepted counters: each tag's newest becomes ``last``, the one before (this
        call's second newest, else the old ``last``) ``prev``."""
        if not len(tag):
            return
        order = np.lexsort((seen, counter, tag))
        tag, counter, seen = tag[order], counter[order], seen[order]
        distinct = np.r_[True, (tag[1:] != tag[:-1]) | (counter[1:] != counter[:-1])]
        tag, counter, seen = tag[distinct], counter[distinct], seen[distinct]  # earliest seen
        newest = np.r_[tag[1:] != tag[:-1], True]
        second = np.r_[newest[1:], False] & np.r_[tag[:-1] == tag[1:], False]
        t_new = tag[newest]
        has_second = np.zeros(self.n, dtype=bool)
        has_second[tag[second]] = True
        old = ~has_second[t_new]
        t_old = t_new[old]
        self.prev[t_old] = self.last[t_old]
        self.prev_now[t_old], self.prev_obs[t_old] = self.last_now[t_old], self.last_obs[t_old]
        t_sec = tag[second]
        self.prev[t_sec], self.prev_obs[t_sec] = counter[second], seen[second]
        self.prev_now[t_sec] = now
        self.last[t_new], self.last_obs[t_new] = counter[newest], seen[newest]
        self.last_now[t_new] = now
        self._dirty.update(t_new.tolist())

    def _record(
        self, code: NDArray[np.uint8], alarm: NDArray[np.bool_], obs: NDArray[np.void],
        obs_tags: NDArray[np.intp], now: float,
    ) -> None:  # fmt: skip
        """Count the verdicts (per reason, per tag) and keep the attack observations."""
        n_obs = len(obs)
        for c, k in enumerate(np.bincount(code[:n_obs], minlength=len(REASONS)).tolist()):
            if k:
                self.counts[REASONS[c]] += k
        unkeyed = ~self.keyed[obs_tags] & (code[:n_obs] == OK)
        self.counts["unauthenticated_accepted"] += int(np.count_nonzero(unkeyed))
        bad = np.flatnonzero(code[:n_obs] != OK)
        if not len(bad):
            return
        bt, bc = obs_tags[bad], code[bad]
        np.add.at(self.rejected, (bt, bc), 1)
        self.last_reject_t[bt] = now
        self.last_reason[bt] = bc
        self.last_gateway[bt] = obs["gateway"][bad]
        hit = bad[alarm[bad]]
        if len(hit):
            rows = np.zeros(len(hit), dtype=SPOOF_DTYPE)
            rows["t"] = now
            rows["tag"] = obs_tags[hit]
            rows["gateway"] = obs["gateway"][hit]
            rows["rssi"] = obs["rssi"][hit]
            rows["reason"] = code[hit]
            self._spoof.append(rows)

    # -- reports ------------------------------------------------------------------------------
    def report(self, tag_ids: Sequence[str], gateway_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Tags with rejected observations, most recent first: for technicians (no keys)."""
        with self._lock:
            rows = np.flatnonzero(self.rejected.sum(axis=1))
            rows = rows[np.argsort(-self.last_reject_t[rows], kind="stable")]
            out = []
            for i in rows.tolist():
                g = int(self.last_gateway[i])
                out.append({
                    "tag": tag_ids[i], "keyed": bool(self.keyed[i]),
                    "last_t": float(self.last_reject_t[i]),
                    "last_reason": REASONS[int(self.last_reason[i])],
                    "last_gateway": gateway_ids[g] if 0 <= g < len(gateway_ids) else None,
                    **{REASONS[c]: int(n) for c, n in enumerate(self.rejected[i].tolist()) if n},
                })  # fmt: skip
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for logs and the health message."""
        return {"keyed": int(self.keyed.sum()), "macs": self.macs, **dict(self.counts)}


def _bodies(arr: NDArray[np.void] | None, n: int) -> NDArray[np.void]:
    return np.zeros(n, dtype=BODY_DTYPE) if arr is None or len(arr) != n else arr


def _keep(arr: NDArray[np.void] | None, keep: NDArray[np.bool_]) -> NDArray[np.void] | None:
    return arr[keep] if arr is not None and len(arr) == len(keep) else None


def _unique_rows(
    tags: NDArray[np.intp], raw: NDArray[np.uint8]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """First row index of each distinct (tag, 20-byte body) and each row's group: a 64-bit mix
    of the bytes sorted (cheap), then an exact comparison with the group's first row; if any
    row differs from it (a collision, which an attacker could craft) rows are grouped exactly."""
    words = raw[:, :16].copy().view("<u8")
    tail = raw[:, 16:20].copy().view("<u4").reshape(-1).astype(np.uint64)
    mixed = (words[:, 0] * _MIX[0]) ^ (words[:, 1] * _MIX[1]) ^ (tail * _MIX[2])
    mixed ^= tags.astype(np.uint64) << np.uint64(40)
    _, first, inverse = np.unique(mixed, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    rep = first[inverse]
    if (raw == raw[rep]).all() and (tags == tags[rep]).all():
        return first.astype(np.intp), inverse.astype(np.intp)
    both = np.empty((len(raw), 8 + BODY_SIZE), dtype=np.uint8)
    both[:, :8] = tags.astype("<i8").view(np.uint8).reshape(-1, 8)
    both[:, 8:] = raw
    exact = both.view(np.dtype((np.void, 8 + BODY_SIZE))).reshape(-1)
    _, first, inverse = np.unique(exact, return_index=True, return_inverse=True)
    return first.astype(np.intp), inverse.reshape(-1).astype(np.intp)
