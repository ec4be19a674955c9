"""Rooms and cells of a site: the state space of the room filter (:mod:`rtls.rooms`).

A floor is rasterised (``cell_m`` squares from the outline's lower-left corner). A **room** is a
set of raster squares that hold the same zones and are joined by steps that cross no wall: a
zone cut by no wall is one room; the part of a corridor inside an exit zone is a room of its
own; squares in no zone form "elsewhere" rooms. Rooms larger than ``block_m`` are cut into
**cells** of at most that size (the room's bounding box in equal parts, each part split again
where walls separate it), so the filter knows whether a tag is by a door. Two cells share an
**opening** where a step between them crosses no wall (a door, a gap, a zone boundary without a
wall); its length is ``cell_m`` per such step. **Sample points**, where the filter evaluates the
radio model, are every ``point_stride``-th raster square, each standing for the area around it,
plus every square within ``point_stride × cell_m`` of a wall, where the wall loss changes over
a metre (doorways). Shapes: ``M`` rooms, ``S`` cells, ``C`` points, ``Z`` zones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import block_diag, coo_matrix, csr_array
from scipy.sparse import vstack as sparse_vstack
from scipy.sparse.csgraph import connected_components

from rtls import geometry
from rtls.site import Site
from rtls.zone_index import ZoneError, ZoneIndex

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

_PAIR_BLOCK = 1_000_000  # bound on (pairs or points) × walls per geometry call


@dataclass(frozen=True)
class RoomMap:
    """The rooms and cells of every floor; cells and points are grouped by floor, then by cell.

    Rooms: ``room_ids`` (M,) the smallest zone holding the room, ``FLOOR:elsewhere`` for a
    room in no zone, with ``#2``, ``#3`` … when several rooms share a name. Cells:
    ``cell_room`` (S,) their room; ``floor`` (S,); ``zones`` (S, Z) the zones holding the cell
    (a sparse bool ``csr_array``: dense it is cells × zones, 16 MB on a 25-building group);
    ``zone`` (S,) the smallest of them (-1: none); ``area`` (S,) m²; ``opening`` (S, S) metres
    of boundary a person can cross between two cells (symmetric, 0 across floors; a sparse
    ``scipy.sparse.csr_array``: dense it would be S² floats, 1 GB for a 25-building group);
    ``cell_slice[f]`` the cells of floor f. Points: ``points`` (C, 2), ``point_cell`` (C,),
    ``point_area`` (C,) m² each stands for; ``point_slice[f]`` the points of floor f."""

    room_ids: tuple[str, ...]
    cell_room: IntArray
    floor: IntArray
    zones: csr_array
    zone: IntArray
    area: FloatArray
    opening: csr_array
    points: FloatArray
    point_cell: IntArray
    point_area: FloatArray
    cell_slice: tuple[slice, ...]
    point_slice: tuple[slice, ...]

    def __len__(self) -> int:
        """Number of cells (the filter's states)."""
        return len(self.cell_room)

    @classmethod
    def from_site(
        cls,
        site: Site,
        index: ZoneIndex,
        *,
        cell_m: float = 0.5,
        point_stride: int = 2,
        block_m: float = 0.0,
    ) -> RoomMap:
        """The rooms of ``site`` from its floor outlines, walls and the zones of ``index``."""
        return cls.build(
            [np.asarray(f.outline, dtype=np.float64) for f in site.floors],
            [site.walls_of(f.id)[0] for f in site.floors],
            index,
            floor_ids=[f.id for f in site.floors],
            cell_m=cell_m,
            point_stride=point_stride,
            block_m=block_m,
        )

    @classmethod
    def build(
        cls,
        outlines: list[FloatArray],
        walls: list[FloatArray],
        index: ZoneIndex,
        *,
        floor_ids: list[str] | None = None,
        cell_m: float = 0.5,
        point_stride: int = 2,
        block_m: float = 0.0,
        min_points: int = 4,
    ) -> RoomMap:
        """Cut floor f (outline ``outlines[f]`` (K, 2), walls ``walls[f]`` (W, 4) rows
        ``x1, y1, x2, y2``) into rooms and cells as the module says; ``block_m`` 0 keeps rooms
        whole; a cell with fewer than ``min_points`` coarse points samples all its squares."""
        if len(walls) != len(outlines) or index.n_floors != len(outlines):
            raise ZoneError("need one outline and one wall array per floor of the zone index")
        if not (cell_m > 0 and point_stride >= 1 and block_m >= 0):
            raise ZoneError("need cell_m > 0, point_stride >= 1 and block_m >= 0")
        names = floor_ids if floor_ids is not None else [f"F{i}" for i in range(len(outlines))]
        parts = [
            _cut_floor(f, outlines[f], walls[f], index, cell_m, point_stride, block_m, min_points)
            for f in range(len(outlines))
        ]
        cell_off = np.cumsum([0] + [len(p.area) for p in parts])
        room_off = np.cumsum([0] + [len(p.room_zone) for p in parts])
        point_off = np.cumsum([0] + [len(p.point_cell) for p in parts])
        opening = csr_array(block_diag([coo_matrix(p.opening) for p in parts], format="csr"))
        room_ids: list[str] = []
        for f, p in enumerate(parts):
            room_ids += [index.ids[z] if z >= 0 else f"{names[f]}:elsewhere" for z in p.room_zone]
        seen: dict[str, int] = {}
        for i, name in enumerate(room_ids):  # rooms sharing a name: X, X#2, X#3, ...
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                room_ids[i] = f"{name}#{seen[name]}"
        zones = csr_array(sparse_vstack([csr_array(p.zones) for p in parts], format="csr"))
        smallest = [index.smallest(p.zones).astype(np.intp) for p in parts]
        return cls(
            tuple(room_ids),
            np.concatenate([p.cell_room + room_off[f] for f, p in enumerate(parts)]),
            np.concatenate([np.full(len(p.area), f, np.intp) for f, p in enumerate(parts)]),
            zones,
            np.concatenate(smallest) if smallest else np.zeros(0, np.intp),
            np.concatenate([p.area for p in parts]),
            opening,
            np.vstack([p.points for p in parts]),
            np.concatenate([p.point_cell + cell_off[f] for f, p in enumerate(parts)]),
            np.concatenate([p.point_area for p in parts]),
            tuple(slice(int(cell_off[f]), int(cell_off[f + 1])) for f in range(len(parts))),
            tuple(slice(int(point_off[f]), int(point_off[f + 1])) for f in range(len(parts))),
        )


@dataclass(frozen=True)
class _Floor:
    room_zone: IntArray  # (M_f,) smallest zone of each room
    cell_room: IntArray  # (S_f,)
    zones: BoolArray  # (S_f, Z)
    area: FloatArray  # (S_f,)
    opening: FloatArray  # (S_f, S_f)
    points: FloatArray  # (C_f, 2), grouped by cell
    point_cell: IntArray  # (C_f,)
    point_area: FloatArray  # (C_f,)


def _cut_floor(
    f: int,
    outline: FloatArray,
    walls: FloatArray,
    index: ZoneIndex,
    cell_m: float,
    stride: int,
    block_m: float,
    min_points: int,
) -> _Floor:
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    nx, ny = (int(v) for v in np.ceil((hi - lo) / cell_m - 1e-9))
    iy, ix = np.divmod(np.arange(nx * ny), nx)
    inside = geometry.points_in_polygon(lo + (np.column_stack([ix, iy]) + 0.5) * cell_m, outline)
    sq = np.flatnonzero(inside)  # raster index of each walkable square
    n = len(sq)
    if n == 0:
        z = len(index)
        return _Floor(np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros((0, z), bool),
                      np.zeros(0), np.zeros((0, 0)), np.zeros((0, 2)), np.zeros(0, np.intp),
                      np.zeros(0))  # fmt: skip
    ix, iy = ix[sq], iy[sq]
    xy = lo + (np.column_stack([ix, iy]) + 0.5) * cell_m
    of_raster = np.full(nx * ny, -1)
    of_raster[sq] = np.arange(n)
    sig = index.contains(xy, np.full(n, f))  # (n, Z)
    # squares' zone signatures over this floor's zones only (the others hold no square here):
    # over all Z columns, the row sort made a site of many floors quadratic to build
    own = sig[:, index.floor == f]
    label = np.unique(own, axis=0, return_inverse=True)[1].reshape(-1)
    # 4-neighbour steps between walkable squares, and whether they cross a wall
    right = sq[(ix < nx - 1) & inside[np.minimum(sq + 1, nx * ny - 1)]]
    up = sq[(iy < ny - 1) & inside[np.minimum(sq + nx, nx * ny - 1)]]
    a = of_raster[np.concatenate([right, up])]
    b = of_raster[np.concatenate([right + 1, up + nx])]
    segs = np.asarray(walls, dtype=np.float64).reshape(-1, 4)
    crossed = np.zeros(len(a), dtype=bool)
    step = max(1, _PAIR_BLOCK // max(1, len(segs)))
    for s in range(0, len(a), step) if len(segs) else ():
        sl = slice(s, s + step)
        crossed[sl] = geometry.segment_crossing_matrix(xy[a[sl]], xy[b[sl]], segs).any(axis=1)
    room = _components(n, a, b, ~crossed & (label[a] == label[b]))
    cell = room
    if block_m > 0:
        blk = _blocks(xy, room, block_m)
        cell = _components(n, a, b, ~crossed & (blk[a] == blk[b]))
    n_cells = int(cell.max()) + 1
    first = np.unique(cell, return_index=True)[1]
    cell_room = room[first]
    room_zone = index.smallest(sig[np.unique(room, return_index=True)[1]]).astype(np.intp)
    door = ~crossed & (cell[a] != cell[b])
    opening = np.zeros((n_cells, n_cells))
    np.add.at(opening, (cell[a[door]], cell[b[door]]), cell_m)
    opening += opening.T
    # sample points: every stride-th square standing for its stride × stride block, and every
    # square near a wall
    coarse = (ix % stride == 0) & (iy % stride == 0)
    dense = np.zeros(n, dtype=bool)
    if len(segs) and stride > 1:
        for s in range(0, n, step):
            near = geometry.segment_distance(xy[s : s + step], segs).min(axis=1)
            dense[s : s + step] = near <= stride * cell_m
    few = np.bincount(cell[coarse & ~dense], minlength=n_cells) < min_points
    dense |= few[cell]
    chosen = np.flatnonzero(coarse | dense)
    chosen = chosen[np.argsort(cell[chosen], kind="stable")]
    block = (iy // stride) * nx + ix // stride  # a coarse point's share: its block's squares
    share = np.bincount(block[~dense], minlength=int(block.max()) + 1)  # that are not dense
    weight = np.where(dense[chosen], 1.0, share[block[chosen]]) * cell_m * cell_m
    return _Floor(
        room_zone,
        cell_room,
        sig[first],
        np.bincount(cell, minlength=n_cells).astype(np.float64) * (cell_m * cell_m),
        opening,
        xy[chosen],
        cell[chosen],
        weight,
    )


def _components(n: int, a: IntArray, b: IntArray, joined: BoolArray) -> IntArray:
    """Connected components (n,) of n squares joined by the steps a[i] - b[i] where ``joined``."""
    graph = coo_matrix((np.ones(int(joined.sum())), (a[joined], b[joined])), shape=(n, n))
    return np.asarray(connected_components(graph, directed=False)[1], dtype=np.intp)


def _blocks(xy: FloatArray, room: IntArray, block_m: float) -> IntArray:
    """Block label (n,) of each square: its room's bounding box cut into equal parts of at most
    ``block_m`` along each axis."""
    n_rooms = int(room.max()) + 1
    lo = np.full((n_rooms, 2), np.inf)
    hi = np.full((n_rooms, 2), -np.inf)
    np.minimum.at(lo, room, xy)
    np.maximum.at(hi, room, xy)
    size = hi - lo + 1e-9
    parts = np.maximum(1, np.ceil(size / block_m)).astype(np.intp)  # (M, 2)
    k = np.minimum((xy - lo[room]) / size[room] * parts[room], parts[room] - 1).astype(np.intp)
    width = int(parts.max())
    return np.asarray((room * width + k[:, 0]) * width + k[:, 1], dtype=np.intp)
