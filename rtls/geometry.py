"""Plane geometry over NumPy arrays: polygons, segments, crossings.

All functions are vectorised; coordinates are metres in a floor's plane. Shapes are given in
each docstring; ``N`` points, ``K`` polygon vertices, ``W`` wall segments.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

_EPS = 1e-12


def as_points(points: ArrayLike) -> FloatArray:
    """Return ``points`` as a float array of shape (N, 2); a single point gives (1, 2)."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"expected points of shape (N, 2), got {arr.shape}")
    return arr


def polygon_area(polygon: ArrayLike) -> float:
    """Signed area of a simple polygon (K, 2); positive when counter-clockwise (shoelace)."""
    p = as_points(polygon)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def polygon_centroid(polygon: ArrayLike) -> FloatArray:
    """Area centroid (2,) of a simple polygon (K, 2)."""
    p = as_points(polygon)
    x, y = p[:, 0], p[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2.0
    if abs(area) < _EPS:
        return np.asarray(p.mean(axis=0), dtype=np.float64)
    cx = ((x + xn) * cross).sum() / (6.0 * area)
    cy = ((y + yn) * cross).sum() / (6.0 * area)
    return np.array([cx, cy])


def points_in_polygon(points: ArrayLike, polygon: ArrayLike) -> BoolArray:
    """Even-odd rule: which of ``points`` (N, 2) lie inside ``polygon`` (K, 2). Returns (N,).

    Points exactly on an edge may fall either side; callers that care use hysteresis.
    """
    pts = as_points(points)
    poly = as_points(polygon)
    x = pts[:, 0:1]
    y = pts[:, 1:2]
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)  # (N, K)
    dy = np.where(y2 == y1, 1.0, y2 - y1)
    x_cross = x1 + (y - y1) * (x2 - x1) / dy
    hits = straddles & (x < x_cross)
    return np.asarray(hits.sum(axis=1) % 2 == 1)


def points_in_polygons(points: ArrayLike, polygons: list[FloatArray]) -> BoolArray:
    """Membership matrix (N, Z) of points (N, 2) in each of Z polygons (each (K_z, 2))."""
    pts = as_points(points)
    out = np.zeros((pts.shape[0], len(polygons)), dtype=bool)
    for j, poly in enumerate(polygons):
        out[:, j] = points_in_polygon(pts, poly)
    return out


def segment_crossings(a: ArrayLike, b: ArrayLike, walls: ArrayLike) -> NDArray[np.int64]:
    """Count, for each segment a[i]→b[i], how many wall segments it properly crosses.

    a, b: (N, 2) segment ends; walls: (W, 4) rows ``x1, y1, x2, y2``. Returns (N,) counts.
    Touching at an end point or running collinear does not count as a crossing.
    """
    return np.asarray(segment_crossing_matrix(a, b, walls).sum(axis=1), dtype=np.int64)


def segment_crossing_matrix(a: ArrayLike, b: ArrayLike, walls: ArrayLike) -> BoolArray:
    """Boolean (N, W): segment a[i]→b[i] properly crosses wall j (strict orientation test)."""
    p = as_points(a)
    q = as_points(b)
    w = np.asarray(walls, dtype=np.float64).reshape(-1, 4)
    if w.shape[0] == 0 or p.shape[0] == 0:
        return np.zeros((p.shape[0], w.shape[0]), dtype=bool)
    px, py = p[:, 0:1], p[:, 1:2]
    qx, qy = q[:, 0:1], q[:, 1:2]
    ux, uy, vx, vy = w[:, 0], w[:, 1], w[:, 2], w[:, 3]

    def orient(
        ax: FloatArray,
        ay: FloatArray,
        bx: FloatArray,
        by: FloatArray,
        cx: FloatArray,
        cy: FloatArray,
    ) -> FloatArray:
        return np.asarray((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))

    d1 = orient(px, py, qx, qy, ux, uy)
    d2 = orient(px, py, qx, qy, vx, vy)
    d3 = orient(ux, uy, vx, vy, px, py)
    d4 = orient(ux, uy, vx, vy, qx, qy)
    return np.asarray(((d1 * d2) < -_EPS) & ((d3 * d4) < -_EPS))


def segment_distance(points: ArrayLike, walls: ArrayLike) -> FloatArray:
    """Distance from each point (N, 2) to each segment (W, 4). Returns (N, W)."""
    p = as_points(points)
    w = np.asarray(walls, dtype=np.float64).reshape(-1, 4)
    a = w[:, 0:2]
    d = w[:, 2:4] - a
    len2 = np.maximum((d * d).sum(axis=1), _EPS)
    rel = p[:, None, :] - a[None, :, :]
    t = np.clip((rel * d[None, :, :]).sum(axis=2) / len2, 0.0, 1.0)
    closest = a[None, :, :] + t[:, :, None] * d[None, :, :]
    return np.asarray(np.linalg.norm(p[:, None, :] - closest, axis=2))


def polyline_segments(points: ArrayLike) -> FloatArray:
    """Segments (M-1, 4) joining consecutive points of a polyline (M, 2)."""
    p = as_points(points)
    return np.hstack([p[:-1], p[1:]])


def polygon_segments(polygon: ArrayLike) -> FloatArray:
    """Closed-ring segments (K, 4) of a polygon (K, 2)."""
    p = as_points(polygon)
    return np.hstack([p, np.roll(p, -1, axis=0)])


def is_simple_polygon(polygon: ArrayLike) -> bool:
    """True when no two non-adjacent edges of ``polygon`` (K, 2) cross (K >= 3)."""
    p = as_points(polygon)
    k = p.shape[0]
    if k < 3:
        return False
    seg = polygon_segments(p)
    cross = segment_crossing_matrix(seg[:, 0:2], seg[:, 2:4], seg)
    return not bool(cross.any())
