"""The fuzzing bench's inputs: the seed corpus (golden messages, bodies and console requests)
and a seeded, structure-aware mutator.

Seeds come from the repository's golden files (``tests/gateways/golden/messages.json``,
``tests/rtls/golden/*.json``) and from valid console requests (docs/console-api.md). The
:class:`Mutator` applies one to four mutations to a seed: on bytes (bit flips, interesting
bytes, truncation, deletion, insertion, duplication, splices with another seed, wrong UTF-8,
native batch header and record fields set to edge values); on JSON (type swaps, NaN/inf/huge
numbers, deleted / added / renamed keys, deep nesting, huge strings, lone surrogates); on
topics (levels replaced, added, dropped). A share of inputs is pure random bytes, and native
batches are also generated from scratch with random records (up to the 2,000-record limit).
All randomness comes from one ``random.Random`` (seeded by the caller).
"""

from __future__ import annotations

import json
import math
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from rtls.advertisement import BODY_DTYPE, MAC_PREFIX
from rtls.batch import MAX_RECORDS, RECORD_DTYPE, RECORD_SIZE
from rtls.directory import Directory

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_GOLDEN = ROOT / "tests" / "gateways" / "golden" / "messages.json"
RTLS_GOLDEN = ROOT / "tests" / "rtls" / "golden"

NUMBERS: Final[tuple[int | float, ...]] = (
    0, -1, 1, 2, 7, 20, 37, 100, 127, -127, 128, -128, 255, 256, 65535, 65536, 2**31 - 1, -2**31,
    2**32, 2**53, 2**53 + 1, 2**63, -2**63, 2**64, 10**30, -10**30, 10**400, 1e308, -1e308,
    5e-324, 0.5, -0.0, 1e-9, 1.7e9, 1.7e12, float("nan"), float("inf"), float("-inf"),
)  # fmt: skip
STRINGS: Final[tuple[str, ...]] = (
    "", " ", "\x00", "\ud800", "\udfff", "\u202e", "é", "😀", "null", "NaN", "Infinity", "1e999",
    "-1", "0x10", "online", "offline", "C0:DE:00:01:23:45", "c0de00012345", "AA:BB:CC:DD:EE:FF",
    "ffff1145230100070002", "gw-01", "door-r1", "maternity-east", "*", "../..", "%s%n", "+", "#",
    "nurse", "admin", "security", "technician", "L1-WARD", "genuine", "false", "test", "I01",
    "M01", "S01", "E1", "DR-E1", "victim.vic",
)  # fmt: skip
KEYS: Final[tuple[str, ...]] = (
    "v", "t", "id", "mac", "rssi", "gateway", "reader", "door", "serial", "kind", "state",
    "manufacturerdata", "rssi@1m", "raw", "distance", "uptime", "uptime_s", "op", "command",
    "args", "alarm", "baby", "mother", "tag", "target", "user", "password", "token", "since",
    "limit", "name", "role", "scopes", "outcome", "comment", "duration_s", "reason", "escort",
    "lang", "display", "__proto__",
)  # fmt: skip
BAD_UTF8: Final = (b"\xc0\x80", b"\xed\xa0\x80", b"\xff", b"\xfe\xff", b"\x80", b"\xf4\x90\x80\x80",
                   b"\xe2\x82", b"\x00")  # fmt: skip
BYTES: Final = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x25)
_NEST: Final = "\x00nest\x00"  # placeholder replaced by deep nesting after serialising


@dataclass(frozen=True)
class Seed:
    """One seed input of a target: ``topic`` (decoders) and ``payload``."""

    topic: str
    payload: bytes


# -- seeds -------------------------------------------------------------------------------------


def fuzz_directory() -> tuple[Directory, list[str], list[int]]:
    """The tags, gateways and readers of the golden messages (synthetic and real), so mutated
    inputs reach the decoders' deepest paths instead of stopping at ``unknown_gateway``;
    returns the directory, its gateway ids and its tag serials."""
    real = json.loads((RTLS_GOLDEN / "real_messages.json").read_text())
    gws = [("gw-01", "native"), ("gw_01", "espresense"), ("G2", "native"), ("A", "native")]
    gws += [(str(g), str(f)) for g, f in real["gateways"]]
    tags = [("infant-1", 74565), ("badge-1", 0x0BADCAFE), ("mother-1", 77)]
    tags += [(t["id"], int(t["serial"])) for t in real["tags"]]
    extra = {t["mac"]: t["id"] for t in real["tags"]}
    directory = Directory.build(gateways=gws, tags=tags, extra_addresses=extra,
                                readers=[("door-r1", "maternity-east")])  # fmt: skip
    return directory, [g for g, _ in gws], [s for _, s in tags]


def decoder_seeds() -> list[Seed]:
    """Every golden MQTT message: the simulator's hand-checked ones (all formats and topics),
    native batches valid and invalid, and real firmware captures."""
    sim = json.loads(GATEWAY_GOLDEN.read_text())
    seeds: list[Seed] = []
    for fmt in ("native", "espresense", "omg", "door"):
        for value in sim[fmt].values():
            for m in value if isinstance(value, list) else [value]:
                if "payload_segments" in m:
                    payload = bytes.fromhex("".join(m["payload_segments"]))
                else:
                    payload = str(m["payload"]).encode()
                seeds.append(Seed(m["topic"], payload))
    batches = json.loads((RTLS_GOLDEN / "batches.json").read_text())
    for b in [*batches["valid"], *batches["invalid"]]:
        seeds.append(Seed("rtls/v1/gw/gw-01/obs", bytes.fromhex("".join(b["segments"]))))
    real = json.loads((RTLS_GOLDEN / "real_messages.json").read_text())
    seeds += [Seed(m["topic"], m["payload"].encode()) for m in real["messages"]]
    return seeds


def body_seeds() -> list[bytes]:
    """Advertisement bodies (valid and invalid), manufacturer data and full advertising data."""
    adv = json.loads((RTLS_GOLDEN / "advertisements.json").read_text())
    out: list[bytes] = []
    for v in adv["vectors"]:
        out += [bytes.fromhex(v[k]) for k in ("body", "manufacturer_data", "adv_data")]
    out += [bytes.fromhex(b["body"]) for b in adv["invalid_bodies"]]
    return out


def console_seeds(alarm_ids: tuple[int, ...] = (1, 2, 3)) -> list[bytes]:
    """Valid console requests of every op and command (docs/console-api.md), as JSON text.
    They never name the fuzz accounts, so no mutation disables the account that logs in."""
    a = alarm_ids[0]
    reqs: list[dict[str, Any]] = [
        {"op": "ping", "id": 1},
        {"op": "login", "id": 2, "user": "nurse.fuzz", "password": "wrong password", "lang": "fr"},
        {"op": "resume", "id": 3, "token": "x" * 43, "since": 1234},
        {"op": "refresh", "id": 4},
        {"op": "audit", "id": 5, "limit": 50},
        {"op": "users", "id": 6},
        {"op": "user_add", "id": 7, "name": "fuzz.new", "role": "nurse", "scopes": ["L1-WARD"],
         "password": "a long enough password", "display": "New"},
        {"op": "user_disable", "id": 8, "name": "victim.vic"},
        {"op": "logout", "id": 9},
        {"op": "command", "id": 10, "command": "acknowledge", "args": {"alarm": a}},
        {"op": "command", "id": 11, "command": "resolve",
         "args": {"alarm": a, "outcome": "test", "comment": "fuzz"}},
        {"op": "command", "id": 12, "command": "shelve", "args": {"alarm": a, "duration_s": 60}},
        {"op": "command", "id": 13, "command": "admit", "args": {"baby": "I01", "name": "Baby"}},
        {"op": "command", "id": 14, "command": "pair", "args": {"baby": "I01", "mother": "M01"}},
        {"op": "command", "id": 15, "command": "unpair", "args": {"baby": "I01", "reason": "x"}},
        {"op": "command", "id": 16, "command": "sign_out",
         "args": {"baby": "I01", "escort": "M01", "duration_s": 600, "reason": "imaging"}},
        {"op": "command", "id": 17, "command": "return", "args": {"baby": "I01"}},
        {"op": "command", "id": 18, "command": "discharge", "args": {"baby": "I02"}},
        {"op": "command", "id": 19, "command": "code_pink", "args": {"reason": "drill"}},
        {"op": "command", "id": 20, "command": "end_code_pink", "args": {"reason": "drill"}},
        {"op": "command", "id": 21, "command": "check_in", "args": {"tag": "S01"}},
        {"op": "command", "id": 22, "command": "end_duty", "args": {"tag": "S01"}},
        {"op": "command", "id": 23, "command": "clear_fire", "args": {"target": "E1"}},
    ]  # fmt: skip
    return [json.dumps(r).encode() for r in reqs]


# -- the mutator -------------------------------------------------------------------------------


class Mutator:
    """Seeded mutations of bytes, JSON documents and MQTT topics."""

    def __init__(self, rng: random.Random, max_bytes: int = 300_000) -> None:
        self.r = rng
        self.max_bytes = max_bytes
        self._json: dict[bytes, Any] = {}

    # -- whole inputs ---------------------------------------------------------------------------
    def mutate(self, seed: bytes, pool: list[bytes], native: bool = False) -> bytes:
        """One to four stacked mutations of ``seed`` (JSON-aware when it parses as JSON);
        ``pool``: other seeds of the same target, for splices; ``native``: a native batch."""
        r = self.r
        out = seed
        for _ in range(1 + int(r.random() ** 2 * 4)):
            doc = self._parsed(out)
            if doc is not None and r.random() < 0.7:
                out = self.json_mutation(doc)
            elif native and r.random() < 0.5:
                out = self.batch_field(out)
            else:
                out = self.byte_mutation(out, pool)
        return out

    def random_bytes(self) -> bytes:
        r = self.r
        n = int(r.expovariate(1 / 40)) if r.random() < 0.97 else r.randrange(self.max_bytes)
        return r.randbytes(n)

    def _parsed(self, data: bytes) -> Any:
        if data in self._json:
            return self._json[data]
        doc = None
        if data[:1] in (b"{", b"[") and len(data) < 4096:
            try:
                doc = json.loads(data)
            except (ValueError, RecursionError):
                doc = None
        if len(self._json) < 256:  # the seeds (stacked mutations' outputs are not reused)
            self._json[data] = doc
        return doc

    # -- bytes ----------------------------------------------------------------------------------
    def byte_mutation(self, data: bytes, pool: list[bytes]) -> bytes:
        r = self.r
        b = bytearray(data)
        op = r.randrange(10)
        if not b and op < 8:
            op = 8
        if op == 0:  # bit flips
            for _ in range(r.randint(1, 8)):
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
        elif op == 1:  # interesting bytes
            for _ in range(r.randint(1, 4)):
                b[r.randrange(len(b))] = r.choice(BYTES)
        elif op == 2:  # truncation
            del b[r.randrange(len(b)) :]
        elif op == 3:  # delete a slice
            i = r.randrange(len(b))
            del b[i : i + r.randint(1, 32)]
        elif op == 4:  # duplicate a slice
            i = r.randrange(len(b))
            j = min(len(b), i + r.randint(1, 64))
            b[i:i] = b[i:j] * r.randint(1, 8)
        elif op == 5:  # splice with another seed
            other = r.choice(pool) if pool else data
            b = b[: r.randrange(len(b) + 1)] + other[r.randrange(len(other) + 1) :]
        elif op == 6:  # wrong UTF-8
            i = r.randrange(len(b) + 1)
            b[i:i] = r.choice(BAD_UTF8)
        elif op == 7:  # a 2- or 4-byte little-endian field set to an edge value
            width = r.choice((2, 4))
            if len(b) >= width:
                i = r.randrange(len(b) - width + 1)
                v = r.choice((0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
                b[i : i + width] = (v & ((1 << 8 * width) - 1)).to_bytes(width, "little")
        elif op == 8:  # insert random bytes
            i = r.randrange(len(b) + 1)
            b[i:i] = r.randbytes(r.randint(1, 64))
        else:  # grow: a huge tail
            b += r.randbytes(r.randint(1, 64)) * r.randint(1, 5000)
        return bytes(b[: self.max_bytes])

    def batch_field(self, data: bytes) -> bytes:
        """A native batch header or record field set to an edge value (layout:
        docs/gateway-formats.md)."""
        r = self.r
        b = bytearray(data)
        if len(b) < 23:
            return bytes(b)
        header = (4, 1), (5, 1), (6, 2), (8, 4), (12, 8), (20, 2), (22, 1)
        if r.random() < 0.5:
            off, width = r.choice(header)
        else:
            start = 23 + b[22]
            n = (len(b) - start) // RECORD_SIZE
            if n <= 0:
                return bytes(b)
            rec = start + RECORD_SIZE * r.randrange(n)
            off, width = rec + r.choice((0, 4, 10, 11, 12, 16, 19, 20, 21)), 1
            width = 4 if off == rec else width
        if off + width > len(b):
            return bytes(b)
        if width == 8:
            v = r.choice((math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, 1.7e9, 2**53))
            b[off : off + 8] = _double(v)
        else:
            v = r.choice((0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, MAX_RECORDS, MAX_RECORDS + 1,
                          0xFFFFFFFF, r.getrandbits(32)))  # fmt: skip
            b[off : off + width] = (v & ((1 << 8 * width) - 1)).to_bytes(width, "little")
        return bytes(b)

    def generated_batch(self, gateways: list[str], serials: list[int]) -> bytes:
        """A structurally valid native batch with random records (addresses of known tags or
        random, bodies valid, random or zero, RSSI and channel anything)."""
        r = self.r
        g = np.random.default_rng(r.getrandbits(64))
        gw = r.choice([*gateways, "x" * r.randint(1, 64)])
        n = r.choice((0, 1, 2, r.randint(1, 64), r.randint(1, MAX_RECORDS)))
        header = b"RTLB" + bytes([1, 0]) + (23 + len(gw)).to_bytes(2, "little")
        header += r.getrandbits(32).to_bytes(4, "little") + _double(r.uniform(0, 2e9))
        header += n.to_bytes(2, "little") + bytes([len(gw)]) + gw.encode()
        rec = np.frombuffer(g.bytes(n * RECORD_SIZE), dtype=RECORD_DTYPE).copy()
        serial = np.where(g.random(n) < 0.7, g.choice(np.array(serials, ">u4"), n),
                          g.integers(0, 2**32, n)).astype(">u4")  # fmt: skip
        known = g.random(n) < 0.8
        rec["address"][known, :2] = np.frombuffer(MAC_PREFIX, np.uint8)
        rec["address"][known, 2:] = serial[known, None].view(np.uint8).reshape(-1, 4)
        rec["channel"] = np.where(g.random(n) < 0.8, g.choice([0, 37, 38, 39], n),
                                  rec["channel"])  # fmt: skip
        body = rec["body"]
        plain = g.random(n) < 0.7  # else: random bytes
        kind = np.where(g.random(n) < 0.2, g.integers(0, 6, n), g.integers(1, 5, n))
        body["version_kind"][plain] = (0x10 | kind[plain]).astype(np.uint8)
        body["serial"][plain] = serial[plain].astype("<u4")
        body["status2"][plain] = 0
        body["battery"][plain] = g.integers(0, 101, int(plain.sum()))
        body["interval"][plain] = 20
        rec["body"][g.random(n) < 0.1] = np.zeros(1, dtype=BODY_DTYPE)
        return header + rec.tobytes()

    # -- JSON -----------------------------------------------------------------------------------
    def value(self, depth: int = 0) -> Any:
        """A random JSON value (NaN and infinities included)."""
        r = self.r
        k = r.randrange(10 if depth < 3 else 8)
        if k == 0:
            return None
        if k == 1:
            return r.random() < 0.5
        if k in (2, 3):
            return r.choice(NUMBERS)
        if k == 4:
            return r.randint(-(2**70), 2**70) if r.random() < 0.3 else r.uniform(-1e6, 1e6)
        if k == 5:
            return r.choice(STRINGS)
        if k == 6:
            return "".join(chr(r.randrange(0x20, 0x3000)) for _ in range(r.randint(0, 20)))
        if k == 7:
            return r.choice(STRINGS[:8]) * r.randint(1000, 70_000)  # huge string
        if k == 8:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {r.choice(KEYS): self.value(depth + 1) for _ in range(r.randint(0, 4))}

    def json_mutation(self, doc: Any) -> bytes:
        r = self.r
        doc = json.loads(json.dumps(doc))  # a private copy
        nodes = _containers(doc)
        parent = r.choice(nodes)
        op = r.randrange(8)
        nest = 0
        if isinstance(parent, dict):
            keys = list(parent)
            key: Any = r.choice(keys) if keys else r.choice(KEYS)
            if op == 0 and keys:
                del parent[key]
            elif op == 1:
                parent[r.choice(KEYS)] = self.value()
            elif op == 2 and keys:
                parent[r.choice(STRINGS + KEYS)] = parent.pop(key)
            elif op == 3:
                parent[key] = _NEST
                nest = r.choice((50, 999, 1000, 5000, 30_000))
            else:
                parent[key] = self._swap(parent.get(key))
        else:
            if op == 0 and parent:
                parent.pop(r.randrange(len(parent)))
            elif op == 3:
                parent.append(_NEST)
                nest = r.choice((50, 999, 1000, 5000, 30_000))
            elif parent:
                i = r.randrange(len(parent))
                parent[i] = self._swap(parent[i])
            else:
                parent.append(self.value())
        if r.random() < 0.02:  # the top level itself
            doc = self._swap(doc)
        try:
            text = json.dumps(doc, ensure_ascii=r.random() < 0.5, allow_nan=True)
        except ValueError:  # an integer of more than 4,300 digits
            text = json.dumps(str(doc)[:1000])
        if nest:
            opening, closing = ("[", "]") if r.random() < 0.5 else ('{"a":', "}")
            text = text.replace(json.dumps(_NEST), opening * nest + "1" + closing * nest, 1)
        return text.encode("utf-8", "surrogatepass")[: self.max_bytes]

    def _swap(self, old: Any) -> Any:
        """A value of another type, or a tweak of a number."""
        r = self.r
        if isinstance(old, int | float) and not isinstance(old, bool) and r.random() < 0.4:
            k = r.randrange(5)
            try:
                return (-old if k == 0 else old + r.choice((-1, 1)) if k == 1
                        else old * 2 ** r.randint(1, 64) if k == 2 else old / 3 if k == 3
                        else float(old))  # fmt: skip
            except OverflowError:  # an integer too large for a float
                return math.inf
        return self.value()

    # -- topics ---------------------------------------------------------------------------------
    def topic(self, topic: str, names: list[str]) -> str:
        """``topic`` with one level replaced, added or dropped, or another root, or random."""
        r = self.r
        levels = topic.split("/")
        op = r.randrange(6)
        choices = [
            *names,
            "",
            "+",
            "#",
            "x" * r.randint(1, 300),
            "é",
            "\x00",
            "..",
            "obs",
            "status",
            "health",
            "read",
            "devices",
            "rooms",
            "BTtoMQTT",
            "LWT",
        ]
        if op == 0:
            levels[r.randrange(len(levels))] = r.choice(choices)
        elif op == 1:
            levels.insert(r.randrange(len(levels) + 1), r.choice(choices))
        elif op == 2 and len(levels) > 1:
            levels.pop(r.randrange(len(levels)))
        elif op == 3:
            levels[0] = r.choice(("rtls", "espresense", "home", "RTLS", ""))
        elif op == 4:
            return "".join(chr(r.randrange(1, 0x800)) for _ in range(r.randint(0, 80)))
        else:
            return topic + "/" + r.choice(choices)
        return "/".join(levels)


def _containers(doc: Any) -> list[Any]:
    """Every dict and list in ``doc`` (the document itself first)."""
    out: list[Any] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict | list):
            out.append(node)
            stack.extend(node.values() if isinstance(node, dict) else node)
    return out or [[doc]]


def _double(v: float) -> bytes:
    return struct.pack("<d", v)
