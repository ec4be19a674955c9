"""Badge posture for synthetic accelerometer traces: rotation maths and posture keyframes.

A pose is the badge-to-world rotation matrix (3, 3): identity is standing upright (badge +z up
the trunk, +x forward, +y left). Postures are keyframes joined by eased geodesic rotations, so
orientation is continuous. Used by :mod:`firmware_sim.activities`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

FloatArray = npt.NDArray[np.float64]

I3 = np.eye(3)
X, Y, Z = 0, 1, 2  # badge axes: forward, left, up the trunk


def rotvec_to_matrix(rotvec: FloatArray) -> FloatArray:
    """Rotation matrices (N, 3, 3) from rotation vectors (N, 3) in rad (Rodrigues' formula)."""
    theta = np.linalg.norm(rotvec, axis=1)
    k = rotvec / np.where(theta > 1e-12, theta, 1.0)[:, None]
    K = np.zeros((rotvec.shape[0], 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s = np.sin(theta)[:, None, None]
    c = (1.0 - np.cos(theta))[:, None, None]
    out = I3 + s * K + c * (K @ K)
    return np.asarray(out, dtype=np.float64)


def matrix_to_rotvec(R: FloatArray) -> FloatArray:
    """Rotation vectors (K, 3) of rotation matrices (K, 3, 3)."""
    return np.asarray(Rotation.from_matrix(R).as_rotvec(), dtype=np.float64)


def rot(axis: int, deg: float) -> FloatArray:
    """One rotation (3, 3) about a badge axis (:data:`X`, :data:`Y`, :data:`Z`) by ``deg``°.
    About Y, positive leans the trunk forward."""
    v = np.zeros((1, 3))
    v[0, axis] = np.radians(deg)
    out: FloatArray = rotvec_to_matrix(v)[0]
    return out


def angle(a: FloatArray, b: FloatArray) -> float:
    """Angle in rad between two poses (3, 3)."""
    return float(np.linalg.norm(matrix_to_rotvec((a.T @ b)[None])[0]))


def turn_time(a: FloatArray, b: FloatArray) -> float:
    """Duration of an unhurried posture change: 0.4 s plus 1.6 s per 90°."""
    return 0.4 + 1.6 * angle(a, b) / (np.pi / 2)


class PosePath:
    """Posture keyframes ``(time, pose, ease)`` from t = 0. ``ease`` shapes the move ending at
    the key: ``smooth`` (zero speed at both ends) or ``fall`` (accelerating, fastest at impact)."""

    def __init__(self, start: FloatArray) -> None:
        self.keys: list[tuple[float, FloatArray, str]] = [(0.0, start, "smooth")]

    @property
    def t(self) -> float:
        """Time of the last keyframe."""
        return self.keys[-1][0]

    @property
    def pose(self) -> FloatArray:
        """Pose of the last keyframe."""
        return self.keys[-1][1]

    def move(self, dur: float, pose: FloatArray, ease: str = "smooth") -> float:
        """Turn to ``pose`` over ``dur`` s after the last keyframe; returns the arrival time."""
        self.keys.append((self.t + max(dur, 1e-3), pose, ease))
        return self.t

    def hold_until(self, t: float) -> None:
        """Keep the last pose until ``t``."""
        if t > self.t:
            self.move(t - self.t, self.pose)

    def eval(self, t: FloatArray) -> FloatArray:
        """Poses (N, 3, 3) at times t (N,); the first pose before, the last pose after."""
        times = np.array([k[0] for k in self.keys])
        poses = np.stack([k[1] for k in self.keys])
        if len(self.keys) == 1:
            return np.broadcast_to(poses[0], (t.size, 3, 3)).copy()
        rel = matrix_to_rotvec(np.transpose(poses[:-1], (0, 2, 1)) @ poses[1:])
        fall = np.array([k[2] == "fall" for k in self.keys[1:]])
        i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
        u = np.clip((t - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)
        s = np.where(fall[i], u * u, u**3 * (10.0 - 15.0 * u + 6.0 * u * u))
        out: FloatArray = poses[i] @ rotvec_to_matrix(s[:, None] * rel[i])
        return out
