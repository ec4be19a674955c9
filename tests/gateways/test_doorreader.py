"""Door choke-point readers: read on entry, repeat while inside, floors, power, transmission."""

from __future__ import annotations

import numpy as np
import pytest

from gateways.doorreader import DoorReaders, Reads
from rtls.errors import ConfigError, RtlsError

# reader 0 at the origin on floor 0, reader 1 at (10, 0) on floor 1; 1 m fields
READER_XY = [[0.0, 0.0], [10.0, 0.0]]
READER_FLOOR = [0, 1]
FAR = (50.0, 50.0)


def _readers(n_tags: int = 3, repeat_s: float = 1.0) -> DoorReaders:
    return DoorReaders(READER_XY, READER_FLOOR, 1.0, n_tags, repeat_s=repeat_s)


def _pairs(reads: Reads) -> list[tuple[int, int]]:
    """(reader, tag) of each read, sorted."""
    return sorted(zip(reads.reader.tolist(), reads.tag.tolist(), strict=True))


def _walk(
    dr: DoorReaders,
    path: dict[float, tuple[float, float]],
    end: float,
    tick: float = 0.25,
    floor: int = 0,
    transmitting: bool = True,
) -> list[float]:
    """Move tag 0 along ``path`` (time -> position from then on; the others stay far) and
    return the times it was read by any reader."""
    times = []
    pos = FAR
    for k in range(round(end / tick) + 1):
        t = round(k * tick, 9)
        pos = path.get(t, pos)
        xy = [pos, FAR, FAR]
        reads = dr.step(t, xy, [floor, 0, 0], [transmitting, True, True])
        assert set(reads.tag.tolist()) <= {0}
        times += [t] * len(reads)
    return times


def test_read_on_entry_and_every_repeat_while_inside() -> None:
    dr = _readers()
    times = _walk(dr, {1.0: (0.5, 0.0), 4.5: FAR}, 8.0)
    assert times == [1.0, 2.0, 3.0, 4.0]


def test_repeat_interval_is_not_lost_to_decimal_ticks() -> None:
    # 0.15 + 1.0 is not exactly 1.15 in floating point: the repeat must still come at 1.15
    dr = _readers()
    times = _walk(dr, {0.15: (0.2, 0.2)}, 3.2, tick=0.05)
    assert times == pytest.approx([0.15, 1.15, 2.15, 3.15])


def test_re_entry_is_read_at_once() -> None:
    dr = _readers()
    times = _walk(dr, {1.0: (0.5, 0.0), 1.5: FAR, 1.75: (0.0, 0.5)}, 3.0)
    assert times == [1.0, 1.75, 2.75]


def test_read_carries_reader_tag_and_distance() -> None:
    dr = _readers(n_tags=3)
    reads = dr.step(0.0, [[0.3, 0.4], [10.0, 0.6], FAR], [0, 1, 0], [True, True, True])
    assert len(reads) == 2
    assert _pairs(reads) == [(0, 0), (1, 1)]
    by_tag = dict(zip(reads.tag.tolist(), reads.distance.tolist(), strict=True))
    assert by_tag == pytest.approx({0: 0.5, 1: 0.6})


def test_field_edge_is_inside() -> None:
    dr = _readers()
    assert len(dr.step(0.0, [[1.0, 0.0], FAR, FAR], [0, 0, 0], [True] * 3)) == 1
    dr = _readers()
    assert len(dr.step(0.0, [[1.001, 0.0], FAR, FAR], [0, 0, 0], [True] * 3)) == 0


def test_no_read_on_another_floor() -> None:
    dr = _readers()
    # right under reader 0 but one floor up, and right over reader 1 but one floor down
    reads = dr.step(0.0, [[0.0, 0.0], [10.0, 0.0], FAR], [1, 0, 0], [True] * 3)
    assert len(reads) == 0
    reads = dr.step(0.25, [[0.0, 0.0], [10.0, 0.0], FAR], [0, 1, 0], [True] * 3)
    assert _pairs(reads) == [(0, 0), (1, 1)]


def test_powered_off_reader_reads_nothing_and_reads_at_once_when_back() -> None:
    dr = _readers()
    dr.set_up(0, False)
    inside = [[0.0, 0.5], [10.0, 0.5], FAR]
    floors = [0, 1, 0]
    assert _pairs(dr.step(0.0, inside, floors, [True] * 3)) == [(1, 1)]
    assert _pairs(dr.step(0.5, inside, floors, [True] * 3)) == []
    dr.set_up(0, True)
    assert _pairs(dr.step(0.75, inside, floors, [True] * 3)) == [(0, 0)]
    assert _pairs(dr.step(1.0, inside, floors, [True] * 3)) == [(1, 1)]


def test_tag_not_transmitting_is_not_read() -> None:
    dr = _readers()
    assert _walk(dr, {1.0: (0.5, 0.0)}, 3.0, transmitting=False) == []
    # transmitting again while inside: read at once, then every repeat
    xy, floors = [[0.5, 0.0], FAR, FAR], [0, 0, 0]
    reads = [len(dr.step(t, xy, floors, [True] * 3)) for t in (3.25, 3.5, 4.0, 4.25)]
    assert reads == [1, 0, 0, 1]


def test_repeat_s_is_configurable() -> None:
    dr = _readers(repeat_s=0.5)
    times = _walk(dr, {1.0: (0.5, 0.0), 3.0: FAR}, 4.0)
    assert times == [1.0, 1.5, 2.0, 2.5]


def test_many_tags_and_readers_at_once() -> None:
    rng = np.random.default_rng(4)
    n, r = 200, 5
    rxy = rng.uniform(0.0, 20.0, (r, 2))
    dr = DoorReaders(rxy, np.zeros(r, dtype=int), 2.0, n)
    txy = rng.uniform(0.0, 20.0, (n, 2))
    reads = dr.step(0.0, txy, np.zeros(n, dtype=int), np.ones(n, dtype=bool))
    d = np.linalg.norm(txy[:, None, :] - rxy[None, :, :], axis=2)
    expected = sorted(zip(*np.nonzero((d <= 2.0).T), strict=True))
    assert _pairs(reads) == [(int(a), int(b)) for a, b in expected]
    assert reads.distance == pytest.approx(d[reads.tag, reads.reader])


@pytest.mark.parametrize(
    ("xy", "floor", "range_m", "repeat_s", "words"),
    [
        (READER_XY, [0], 1.0, 1.0, "floors"),
        (READER_XY, READER_FLOOR, [1.0, 2.0, 3.0], 1.0, "ranges"),
        (READER_XY, READER_FLOOR, [1.0, 0.0], 1.0, "positive range"),
        ([[0.0, np.nan], [1.0, 1.0]], READER_FLOOR, 1.0, 1.0, "finite"),
        (READER_XY, READER_FLOOR, 1.0, 0.0, "repeat_s"),
    ],
)
def test_bad_configuration_is_rejected(
    xy: object, floor: object, range_m: object, repeat_s: float, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        DoorReaders(xy, floor, range_m, 3, repeat_s=repeat_s)  # type: ignore[arg-type]


def test_wrong_number_of_tags_is_rejected() -> None:
    dr = _readers(n_tags=3)
    with pytest.raises(RtlsError, match="3 tags"):
        dr.step(0.0, [[0.0, 0.0], FAR], [0, 0], [True, True])
