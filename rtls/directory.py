"""Lookups from what gateways put on the wire to site indices, built once per site.

A :class:`Directory` answers: which gateway sent this (native id, ESPresense room slug,
OpenMQTTGateway name), which tag is this (serial, BLE address), which door reader is this.
Tag lookups are vectorised (sorted keys + ``np.searchsorted``): no Python object per record.
Unknown identities give ``-1`` (``UNKNOWN``); decoders turn that into a counted reason.

Addresses are 48-bit integers made of the six address bytes in display order:
``C0:DE:00:01:23:45`` is ``0xC0DE00012345`` (docs/decoding.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rtls.advertisement import COMPANY_ID, parse_mac, tag_address
from rtls.errors import ConfigError, PayloadError

if TYPE_CHECKING:
    from rtls.site import Site

UNKNOWN: Final = -1
ADDRESS_MAX: Final = (1 << 48) - 1
_SLUG_RE: Final = re.compile(r"[\s\W-]+", re.ASCII)

AddressLike = int | bytes | bytearray | str


def room_slug(name: str) -> str:
    """An ESPresense room name as the firmware slugs it: non-word runs -> ``_``, lower case.

    Same rule as the node firmware and ``gateways.formats.espresense_room`` (which the engine
    must not import); ``Maternity East 2`` -> ``maternity_east_2``. Empty slugs raise.
    """
    slug = _SLUG_RE.sub("_", name).lower().strip("_")
    if not slug:
        raise ConfigError(f"room name {name!r} has no usable characters")
    return slug


def address_key(address: AddressLike) -> int:
    """One address as a 48-bit int: from an int, 6 bytes (display order) or text (any case,
    with or without colons). Raises PayloadError ``bad_mac``."""
    if isinstance(address, bool):
        raise PayloadError(f"{address!r} is not an address", reason="bad_mac")
    if isinstance(address, int):
        if not 0 <= address <= ADDRESS_MAX:
            raise PayloadError(f"address {address!r} is not a 48-bit integer", reason="bad_mac")
        return address
    if isinstance(address, bytes | bytearray):
        if len(address) != 6:
            raise PayloadError(f"an address has 6 bytes, got {len(address)}", reason="bad_mac")
        return int.from_bytes(address, "big")
    return int.from_bytes(parse_mac(address), "big")


def address_keys(addresses: ArrayLike) -> NDArray[np.uint64]:
    """Vectorised :func:`address_key`: uint8 addresses (N, 6), display order -> (N,) uint64."""
    a = np.asarray(addresses, dtype=np.uint8).reshape(-1, 6)
    padded = np.zeros((len(a), 8), dtype=np.uint8)
    padded[:, 2:] = a
    return padded.view(">u8").reshape(-1).astype(np.uint64)


_SENTINEL: Final = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # above every address and serial


def _sorted_lookup(
    keys: NDArray[np.uint64], values: NDArray[np.int32], query: NDArray[np.uint64]
) -> NDArray[np.int32]:
    """values[i] where keys[i] == query, else UNKNOWN.

    ``keys`` (K+1,) ascending and ending with _SENTINEL, ``values`` (K+1,) ending with UNKNOWN;
    ``query`` (N,) below _SENTINEL. One searchsorted, two gathers, no Python loop.
    """
    pos = np.searchsorted(keys, query)
    out = values[pos]
    out[keys[pos] != query] = UNKNOWN
    return out


def _sorted_table(pairs: Iterable[tuple[int, int]]) -> tuple[NDArray[np.uint64], NDArray[np.int32]]:
    items = sorted(pairs)
    keys = np.array([k for k, _ in items] + [int(_SENTINEL)], dtype=np.uint64)
    values = np.array([v for _, v in items] + [UNKNOWN], dtype=np.int32)
    return keys, values


def _empty_keys() -> NDArray[np.uint64]:
    return np.array([_SENTINEL], dtype=np.uint64)


def _empty_values() -> NDArray[np.int32]:
    return np.array([UNKNOWN], dtype=np.int32)


@dataclass(frozen=True, eq=False)
class Directory:
    """Wire identities -> indices into ``site.gateways``, ``site.tags``, ``site.door_readers``.

    Build with :meth:`from_site` (or :meth:`build` in tests). Immutable; share it freely.
    """

    gateway_ids: tuple[str, ...]
    tag_ids: tuple[str, ...]
    tag_serials: NDArray[np.uint32]  # (T,) the serial each tag advertises
    reader_ids: tuple[str, ...]
    reader_doors: tuple[str, ...]  # (R,) door id of each reader
    company_id: int = COMPANY_ID
    _native: Mapping[str, int] = field(default_factory=dict, repr=False)
    _espresense: Mapping[str, int] = field(default_factory=dict, repr=False)
    _omg: Mapping[str, int] = field(default_factory=dict, repr=False)
    _readers: Mapping[str, int] = field(default_factory=dict, repr=False)
    _serial_keys: NDArray[np.uint64] = field(default_factory=_empty_keys, repr=False)
    _serial_tags: NDArray[np.int32] = field(default_factory=_empty_values, repr=False)
    _address_keys: NDArray[np.uint64] = field(default_factory=_empty_keys, repr=False)
    _address_tags: NDArray[np.int32] = field(default_factory=_empty_values, repr=False)
    _serials_padded: NDArray[np.uint32] = field(
        default_factory=lambda: np.zeros(1, np.uint32), repr=False
    )  # (T+1,): tag_serials then 0, so that index -1 reads 0

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_site(
        cls,
        site: Site,
        *,
        extra_addresses: Mapping[AddressLike, str] | None = None,
        company_id: int = COMPANY_ID,
    ) -> Directory:
        """The directory of ``site``.

        Every tag is known by its serial and by ``tag_address(serial)``. ``extra_addresses``
        maps further BLE addresses to tag ids (for example third-party beacons, or a real
        capture in a test). ESPresense room slugs and OpenMQTTGateway names come from the
        gateway ids; see :meth:`build` for slug collisions.
        """
        return cls.build(
            gateways=[(g.id, g.format.value) for g in site.gateways],
            tags=[(t.id, t.serial) for t in site.tags],
            readers=[(r.id, r.door) for r in site.door_readers],
            extra_addresses=extra_addresses,
            company_id=company_id,
        )

    @classmethod
    def build(
        cls,
        *,
        gateways: Sequence[tuple[str, str]] = (),
        tags: Sequence[tuple[str, int]] = (),
        readers: Sequence[tuple[str, str]] = (),
        extra_addresses: Mapping[AddressLike, str] | None = None,
        company_id: int = COMPANY_ID,
    ) -> Directory:
        """A directory from plain lists: gateways ``(id, format)``, tags ``(id, serial)``,
        readers ``(id, door id)``. Raises ConfigError on duplicates or bad references.

        Native batches and OpenMQTTGateway topics name a gateway by its exact id. ESPresense
        nodes publish the slug of their room name, so each gateway id is also registered under
        its slug; when several gateways share a slug, the one whose format is ``espresense``
        wins, two ``espresense`` gateways sharing a slug is a ConfigError, and a slug shared
        only by other formats is left out (no ESPresense node can own it).
        """
        gateway_ids = tuple(g for g, _ in gateways)
        native = _index(gateway_ids, "gateway")
        espresense = _slug_map(gateways)
        tag_ids = tuple(t for t, _ in tags)
        tag_index = _index(tag_ids, "tag")
        serials = [s for _, s in tags]
        for tag_id, serial in tags:
            if isinstance(serial, bool) or not isinstance(serial, int):
                raise ConfigError(f"tag {tag_id!r}: serial {serial!r} is not an integer")
            if not 0 <= serial <= 0xFFFF_FFFF:
                raise ConfigError(f"tag {tag_id!r}: serial {serial} is not a u32")
        if len(set(serials)) != len(serials):
            dup = sorted({s for s in serials if serials.count(s) > 1})
            raise ConfigError(f"several tags share serial(s) {dup}")
        addresses: dict[int, int] = {
            int.from_bytes(tag_address(s), "big"): i for i, s in enumerate(serials)
        }
        for address, tag_id in (extra_addresses or {}).items():
            if tag_id not in tag_index:
                raise ConfigError(f"extra address {address!r} names unknown tag {tag_id!r}")
            try:
                key = address_key(address)
            except PayloadError as exc:
                raise ConfigError(f"extra address {address!r}: {exc}") from exc
            if addresses.get(key, tag_index[tag_id]) != tag_index[tag_id]:
                raise ConfigError(f"address {address!r} already belongs to another tag")
            addresses[key] = tag_index[tag_id]
        reader_ids = tuple(r for r, _ in readers)
        serial_keys, serial_tags = _sorted_table((s, i) for i, s in enumerate(serials))
        address_keys_, address_tags = _sorted_table(addresses.items())
        out = cls(
            gateway_ids=gateway_ids,
            tag_ids=tag_ids,
            tag_serials=np.array(serials, dtype=np.uint32),
            reader_ids=reader_ids,
            reader_doors=tuple(d for _, d in readers),
            company_id=company_id,
            _native=native,
            _espresense=espresense,
            _omg=native,
            _readers=_index(reader_ids, "door reader"),
            _serial_keys=serial_keys,
            _serial_tags=serial_tags,
            _address_keys=address_keys_,
            _address_tags=address_tags,
            _serials_padded=np.array([*serials, 0], dtype=np.uint32),
        )
        for arr in (out.tag_serials, out._serial_keys, out._serial_tags, out._address_keys):
            arr.flags.writeable = False
        for arr in (out._address_tags, out._serials_padded):
            arr.flags.writeable = False
        return out

    # -- gateways and readers -----------------------------------------------------------------
    def gateway(self, gateway_id: str) -> int:
        """Index of the gateway whose native id (or OpenMQTTGateway name) is ``gateway_id``."""
        return self._native.get(gateway_id, UNKNOWN)

    def espresense_gateway(self, room: str) -> int:
        """Index of the gateway publishing as ESPresense room slug ``room``."""
        return self._espresense.get(room, UNKNOWN)

    def omg_gateway(self, name: str) -> int:
        """Index of the gateway publishing as ``home/<name>/...`` (OpenMQTTGateway/Theengs)."""
        return self._omg.get(name, UNKNOWN)

    def reader(self, reader_id: str) -> int:
        """Index of the door reader ``reader_id``; its door is ``reader_doors[index]``."""
        return self._readers.get(reader_id, UNKNOWN)

    # -- tags ---------------------------------------------------------------------------------
    def tags_for_serials(self, serials: ArrayLike) -> NDArray[np.int32]:
        """Tag index per serial: (N,) integers -> (N,) int32, -1 where unknown."""
        s = np.asarray(serials).reshape(-1)
        if s.dtype.kind not in "iu":
            raise TypeError(f"serials must be integers, got {s.dtype}")
        if s.dtype.kind == "u" and s.dtype.itemsize <= 4:
            return _sorted_lookup(self._serial_keys, self._serial_tags, s.astype(np.uint64))
        ok = (s >= 0) & (s <= 0xFFFF_FFFF)
        keys = np.where(ok, s, 0).astype(np.uint64)
        out = _sorted_lookup(self._serial_keys, self._serial_tags, keys)
        out[~ok] = UNKNOWN
        return out

    def serials_for_tags(self, tags: NDArray[np.int32]) -> NDArray[np.uint32]:
        """The serial of each tag index: (N,) int32 -> (N,) uint32; 0 where the index is -1."""
        return self._serials_padded[tags]

    def tags_for_addresses(self, addresses: ArrayLike) -> NDArray[np.int32]:
        """Tag index per address: uint8 (N, 6) display order -> (N,) int32, -1 where unknown."""
        return self.tags_for_address_keys(address_keys(addresses))

    def tags_for_address_keys(self, keys: ArrayLike) -> NDArray[np.int32]:
        """Tag index per 48-bit address key: (N,) uint64 -> (N,) int32, -1 where unknown."""
        k = np.asarray(keys, dtype=np.uint64).reshape(-1)
        return _sorted_lookup(self._address_keys, self._address_tags, k)

    def tag_for_serial(self, serial: int) -> int:
        """Tag index of one serial, -1 when unknown."""
        return int(self.tags_for_serials(np.array([serial], dtype=np.int64))[0])

    def tag_for_address(self, address: AddressLike) -> int:
        """Tag index of one address (int, 6 bytes or text), -1 when unknown."""
        key = address_key(address)
        return int(self.tags_for_address_keys(np.array([key], dtype=np.uint64))[0])


def _index(ids: Sequence[str], what: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, ident in enumerate(ids):
        if ident in out:
            raise ConfigError(f"{what} id {ident!r} appears twice")
        out[ident] = i
    return out


def _slug_map(gateways: Sequence[tuple[str, str]]) -> dict[str, int]:
    by_slug: dict[str, list[int]] = {}
    for i, (gw_id, _) in enumerate(gateways):
        by_slug.setdefault(room_slug(gw_id), []).append(i)
    out: dict[str, int] = {}
    for slug, members in by_slug.items():
        esp = [i for i in members if gateways[i][1] == "espresense"]
        if len(esp) > 1:
            names = ", ".join(repr(gateways[i][0]) for i in esp)
            raise ConfigError(f"ESPresense gateways {names} share the room slug {slug!r}")
        if esp:
            out[slug] = esp[0]
        elif len(members) == 1:
            out[slug] = members[0]
    return out
