"""Simulated BLE radio channel: which gateways hear an advertisement, and at what RSSI.

Pure and seeded: every random draw comes from the ``np.random.Generator`` given to
:class:`RadioChannel`. The received power of the link from advertisement ``a`` to gateway ``g`` is
(see ``docs/radio-model.md``)::

    P = P_1m[a] + rx_offset[g] - 10 n[g] log10(max(d, d_min) / 1 m)
        - wall_loss(a -> g) - floor_loss * |floor[a] - floor[g]| + X_shadow + X_fast

Coordinates are metres in the site frame; ``z`` is the absolute elevation (floor elevation plus
height above that floor). Floor ids are level numbers (..., -1, 0, 1, ...), so the number of floors
crossed is the absolute difference. Shapes: ``A`` advertisements, ``G`` gateways, ``W`` walls,
``M`` heard (advertisement, gateway) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import exp1

from rtls.errors import ConfigError, RtlsError
from rtls.walls import FloorWalls as FloorWalls  # re-exported for the simulator's users
from rtls.walls import Interpolation, int_vector, points3
from rtls.walls import WallLossMaps as WallLossMaps

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

ADV_CHANNELS: NDArray[np.uint8] = np.array([37, 38, 39], dtype=np.uint8)  # BLE advertising
RSSI_MIN_DBM = -127
RSSI_MAX_DBM = 20


class RadioError(RtlsError):
    """Bad input to the radio channel at run time (shape, NaN, index out of range)."""


@dataclass(frozen=True, slots=True)
class RadioParams:
    """Radio model parameters; defaults and sources are listed in ``docs/radio-model.md``.

    ``rician_k`` is the linear Rician K factor (power of the direct path over the scattered
    power); 0 gives Rayleigh fading. ``loss_probability`` is the chance that a link drops a packet
    that was strong enough (collisions, interference, scan gaps).
    """

    shadowing_sigma_db: float = 4.0
    shadowing_corr_m: float = 3.0
    fading: bool = True
    rician_k: float = 0.0
    loss_probability: float = 0.03
    sensitivity_dbm: float = -95.0
    floor_loss_db: float = 15.0
    d_min_m: float = 1.0
    raster_resolution_m: float = 0.5
    raster_interpolation: Interpolation = "nearest"

    def __post_init__(self) -> None:
        if self.raster_interpolation not in ("nearest", "bilinear"):
            raise ConfigError(
                f"RadioParams.raster_interpolation = {self.raster_interpolation!r}"
                " must be 'nearest' or 'bilinear'"
            )
        checks: list[tuple[str, float, bool]] = [
            ("shadowing_sigma_db", self.shadowing_sigma_db, self.shadowing_sigma_db >= 0),
            ("shadowing_corr_m", self.shadowing_corr_m, self.shadowing_corr_m > 0),
            ("rician_k", self.rician_k, self.rician_k >= 0),
            ("loss_probability", self.loss_probability, 0 <= self.loss_probability < 1),
            (
                "sensitivity_dbm",
                self.sensitivity_dbm,
                RSSI_MIN_DBM <= self.sensitivity_dbm <= RSSI_MAX_DBM,
            ),
            ("floor_loss_db", self.floor_loss_db, self.floor_loss_db >= 0),
            ("d_min_m", self.d_min_m, self.d_min_m > 0),
            ("raster_resolution_m", self.raster_resolution_m, self.raster_resolution_m > 0),
        ]
        for name, value, ok in checks:
            if not (np.isfinite(value) and ok):
                raise ConfigError(f"RadioParams.{name} = {value!r} is out of range")


@dataclass(frozen=True)
class Heard:
    """What the gateways heard: ``adv`` (M,) index into the A advertisements, ``gateway`` (M,),
    ``rssi`` (M,) int8 dBm, ``channel`` (M,) uint8 in {37, 38, 39}; ordered by (adv, gateway)."""

    adv: IntArray
    gateway: IntArray
    rssi: NDArray[np.int8]
    channel: NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.adv.shape[0])


def _vector(name: str, value: ArrayLike, n: int, exc: type[RtlsError]) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise exc(f"{name} must have shape ({n},) or be a scalar, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise exc(f"{name} contains NaN or infinite values")
    return arr


def fading_mean_db(rician_k: float) -> float:
    """Mean of ``10 log10 |h|²`` for unit-mean-power Rician fading with linear factor ``K``.

    E[ln |h|²] = ln(K / (K + 1)) + E1(K) for a non-central chi-square with 2 degrees of freedom
    (Moser 2008); the K -> 0 (Rayleigh) limit is -γ (Euler's constant).
    """
    if rician_k < 1e-9:
        return float(-10.0 * np.euler_gamma / np.log(10.0))
    mean_ln = np.log(rician_k / (rician_k + 1.0)) + float(exp1(rician_k))
    return float(10.0 * mean_ln / np.log(10.0))


def fading_db(
    rng: np.random.Generator,
    rician_k: float,
    shape: tuple[int, ...],
    dtype: type[np.floating[Any]] = np.float64,
) -> NDArray[np.floating[Any]]:
    """Independent Rician (K = 0: Rayleigh) power-fading samples in dB, shifted to zero mean in dB.

    ``|h|²`` with ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1)`` (unit mean power); the dB values
    are centred so that ``P_1m`` keeps its meaning of mean dBm reading at 1 m.
    """
    if rician_k < 1e-9:
        power = rng.standard_exponential(shape, dtype=dtype)  # |CN(0,1)|² ~ Exp(1)
    else:
        scale = dtype(np.sqrt(0.5 / (rician_k + 1.0)))
        power = rng.standard_normal(shape, dtype=dtype)
        power *= scale
        power += dtype(np.sqrt(rician_k / (rician_k + 1.0)))
        power *= power
        im = rng.standard_normal(shape, dtype=dtype)
        im *= scale
        im *= im
        power += im
    np.maximum(power, dtype(1e-30), out=power)
    db = np.log(power, out=power)
    db *= dtype(10.0 / np.log(10.0))
    db -= dtype(fading_mean_db(rician_k))
    return db


def mean_rssi(
    tag_xyz: ArrayLike,
    tag_floor: ArrayLike,
    tx_power_1m: ArrayLike,
    gateway_xyz: ArrayLike,
    gateway_floor: ArrayLike,
    gateway_n: ArrayLike,
    gateway_rx_offset: ArrayLike,
    wall_loss_db: ArrayLike | None = None,
    *,
    floor_loss_db: float = 15.0,
    d_min_m: float = 1.0,
) -> FloatArray:
    """Expected RSSI (A, G) in dBm, without shadowing, fading, loss, rounding or clipping.

    tag_xyz (A, 3), tag_floor (A,), tx_power_1m (A,) or scalar; gateway_xyz (G, 3),
    gateway_floor (G,), gateway_n (G,) path-loss exponents, gateway_rx_offset (G,) dB;
    wall_loss_db (A, G) or None for no walls. Fading is zero-mean in dB, so this is the mean of
    the simulated (unclipped) readings.
    """
    txyz = points3("tag_xyz", tag_xyz, RadioError)
    gxyz = points3("gateway_xyz", gateway_xyz, RadioError)
    a, g = txyz.shape[0], gxyz.shape[0]
    tfl = int_vector("tag_floor", tag_floor, a, RadioError)
    gfl = int_vector("gateway_floor", gateway_floor, g, RadioError)
    tx = _vector("tx_power_1m", tx_power_1m, a, RadioError)
    n = _vector("gateway_n", gateway_n, g, RadioError)
    off = _vector("gateway_rx_offset", gateway_rx_offset, g, RadioError)
    walls = None if wall_loss_db is None else np.asarray(wall_loss_db, np.float64)
    if walls is not None and (walls.shape != (a, g) or not np.isfinite(walls).all()):
        raise RadioError(f"wall_loss_db must be finite with shape ({a}, {g}), got {walls.shape}")
    if not (np.isfinite(floor_loss_db) and floor_loss_db >= 0 and d_min_m > 0):
        raise RadioError("floor_loss_db must be >= 0 and d_min_m > 0")
    p = _mean_rssi(txyz, tfl, tx, gxyz, gfl, n, off, walls, floor_loss_db, d_min_m)
    return np.asarray(p, dtype=np.float64)


def _mean_rssi(
    txyz: FloatArray,
    tfl: IntArray,
    tx: FloatArray,
    gxyz: FloatArray,
    gfl: IntArray,
    n: FloatArray,
    off: FloatArray,
    walls: NDArray[np.floating[Any]] | None,
    floor_loss_db: float,
    d_min_m: float,
    dtype: type[np.floating[Any]] = np.float64,
) -> NDArray[np.floating[Any]]:
    t = txyz.astype(dtype)
    q = gxyz.astype(dtype)
    d2 = np.subtract.outer(t[:, 0], q[:, 0])  # (A, G), built in place for speed
    d2 *= d2
    for k in (1, 2):
        dk = np.subtract.outer(t[:, k], q[:, k])
        dk *= dk
        d2 += dk
    np.maximum(d2, dtype(d_min_m * d_min_m), out=d2)
    # Log-distance path loss with d0 = 1 m (Rappaport, Wireless Communications, eq. 4.68):
    # 10 n log10(d) = (5 n / ln 10) ln(d²).
    p = np.log(d2, out=d2)
    p *= ((-5.0 / np.log(10.0)) * n).astype(dtype)
    p += np.add.outer(tx.astype(dtype), off.astype(dtype))
    one_floor = gfl.size == 0 or ((tfl == gfl[0]).all() and (gfl == gfl[0]).all())
    if floor_loss_db > 0 and not one_floor:
        floors = np.abs(np.subtract.outer(tfl.astype(dtype), gfl.astype(dtype)))
        floors *= dtype(floor_loss_db)
        p -= floors
    if walls is not None:
        p -= walls
    return p


@dataclass
class _ShadowState:
    z: NDArray[np.float32]  # (T, G) standard-normal shadowing state per link
    last_xyz: FloatArray  # (T, 3) position at the tag's previous advertisement
    started: BoolArray  # (T,) False until the tag's first advertisement after a reset


class RadioChannel:
    """The radio link from ``n_tags`` tags to G gateways, with per-link shadowing state.

    gateway_xyz (G, 3), gateway_floor (G,) int, gateway_n (G,) path-loss exponents and
    gateway_rx_offset (G,) dB (scalars broadcast). ``walls`` maps floor id -> :class:`FloorWalls`;
    pass ``wall_maps`` instead to share rasters already built for the same gateways.
    """

    def __init__(
        self,
        gateway_xyz: ArrayLike,
        gateway_floor: ArrayLike,
        gateway_n: ArrayLike,
        gateway_rx_offset: ArrayLike,
        walls: Mapping[int, FloorWalls] | None,
        params: RadioParams,
        n_tags: int,
        rng: np.random.Generator,
        *,
        wall_maps: WallLossMaps | None = None,
    ) -> None:
        self.gateway_xyz = points3("gateway_xyz", gateway_xyz, ConfigError)
        g = self.gateway_xyz.shape[0]
        self.gateway_floor = int_vector("gateway_floor", gateway_floor, g, ConfigError)
        self.gateway_n = _vector("gateway_n", gateway_n, g, ConfigError)
        if (self.gateway_n <= 0).any():
            raise ConfigError("gateway_n (path-loss exponents) must be > 0")
        self.gateway_rx_offset = _vector("gateway_rx_offset", gateway_rx_offset, g, ConfigError)
        if not isinstance(params, RadioParams):
            raise ConfigError("params must be a RadioParams")
        if isinstance(n_tags, bool) or not isinstance(n_tags, int | np.integer) or n_tags < 0:
            raise ConfigError(f"n_tags must be a non-negative int, got {n_tags!r}")
        if not isinstance(rng, np.random.Generator):
            raise ConfigError("rng must be a numpy.random.Generator")
        if wall_maps is not None and walls is not None:
            raise ConfigError("give walls or wall_maps, not both")
        if wall_maps is None:
            wall_maps = WallLossMaps(
                self.gateway_xyz,
                self.gateway_floor,
                walls or {},
                params.raster_resolution_m,
                params.raster_interpolation,
            )
        elif not (
            np.array_equal(wall_maps.gateway_xy, self.gateway_xyz[:, :2])
            and np.array_equal(wall_maps.gateway_floor, self.gateway_floor)
        ):
            raise ConfigError("wall_maps were built for other gateway positions or floors")
        self.wall_maps = wall_maps
        self.params = params
        self.n_tags = int(n_tags)
        self.rng = rng
        self.gateway_up: BoolArray = np.ones(g, dtype=bool)
        self._state = _ShadowState(
            np.zeros((self.n_tags, g), np.float32),
            np.zeros((self.n_tags, 3)),
            np.zeros(self.n_tags, bool),
        )

    @property
    def n_gateways(self) -> int:
        return int(self.gateway_xyz.shape[0])

    def set_gateway_up(self, gateways: ArrayLike, up: bool) -> None:
        """Power the given gateways (indices or a (G,) bool mask) on or off."""
        idx = np.asarray(gateways)
        if idx.dtype == np.bool_ and idx.shape != (self.n_gateways,):
            raise RadioError(f"gateway mask must have shape ({self.n_gateways},)")
        if idx.dtype != np.bool_ and (
            idx.dtype.kind not in "iu" or ((idx < 0) | (idx >= self.n_gateways)).any()
        ):
            raise RadioError(f"gateway indices must be ints in [0, {self.n_gateways})")
        self.gateway_up[idx] = bool(up)

    def reset_shadowing(self, tags: ArrayLike | None = None) -> None:
        """Forget the shadowing of the given tags (all by default): their next advertisement draws
        fresh, independent shadowing on every link."""
        if tags is None:
            self._state.started[:] = False
        else:
            self._state.started[self._tag_index(tags)] = False

    def shadowing_db(self) -> FloatArray:
        """Current shadowing (n_tags, G) in dB; NaN for tags not heard from since a reset."""
        out = self.params.shadowing_sigma_db * self._state.z.astype(np.float64)
        out[~self._state.started] = np.nan
        return out

    def mean_rssi(
        self, tag_xyz: ArrayLike, tag_floor: ArrayLike, tx_power_1m: ArrayLike
    ) -> FloatArray:
        """Expected RSSI (A, G) dBm of this channel (raster wall loss), no random terms."""
        txyz = points3("tag_xyz", tag_xyz, RadioError)
        a = txyz.shape[0]
        tfl = int_vector("tag_floor", tag_floor, a, RadioError)
        tx = _vector("tx_power_1m", tx_power_1m, a, RadioError)
        return np.asarray(self._mean(txyz, tfl, tx), dtype=np.float64)

    def _mean(
        self,
        txyz: FloatArray,
        tfl: IntArray,
        tx: FloatArray,
        dtype: type[np.floating[Any]] = np.float64,
    ) -> NDArray[np.floating[Any]]:
        walls = None if self.wall_maps.empty else self.wall_maps.lookup(txyz[:, :2], dtype)
        p = self.params
        return _mean_rssi(
            txyz,
            tfl,
            tx,
            self.gateway_xyz,
            self.gateway_floor,
            self.gateway_n,
            self.gateway_rx_offset,
            walls,
            p.floor_loss_db,
            p.d_min_m,
            dtype,
        )

    def _tag_index(self, tags: ArrayLike) -> IntArray:
        idx = np.atleast_1d(np.asarray(tags))
        if idx.ndim != 1:
            raise RadioError(f"tag indices must be a 1-D array, got shape {idx.shape}")
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= self.n_tags):
            raise RadioError(f"tag indices must be ints in [0, {self.n_tags})")
        return idx.astype(np.intp)

    def hear(
        self,
        tag_index: ArrayLike,
        tag_xyz: ArrayLike,
        tag_floor: ArrayLike,
        tx_power_1m: ArrayLike,
        gateway_up: ArrayLike | None = None,
    ) -> Heard:
        """Simulate A advertisements, in time order, at every gateway.

        tag_index (A,) int in [0, n_tags); tag_xyz (A, 3); tag_floor (A,) int; tx_power_1m (A,)
        or scalar, the tag's advertised measured power at 1 m (dBm). ``gateway_up`` (G,) bool
        masks gateways off for this call, on top of :meth:`set_gateway_up`. A tag may appear
        several times; its shadowing evolves between its advertisements in order.
        """
        txyz = points3("tag_xyz", tag_xyz, RadioError)
        a, g = txyz.shape[0], self.n_gateways
        tags = self._tag_index(tag_index)
        if tags.shape != (a,):
            raise RadioError(f"tag_index must have shape ({a},), got {tags.shape}")
        tfl = int_vector("tag_floor", tag_floor, a, RadioError)
        tx = _vector("tx_power_1m", tx_power_1m, a, RadioError)
        up = self.gateway_up
        if gateway_up is not None:
            mask = np.asarray(gateway_up)
            if mask.shape != (g,) or mask.dtype != np.bool_:
                raise RadioError(f"gateway_up must be a bool array of shape ({g},)")
            up = up & mask
        p = self.params
        rssi = self._mean(txyz, tfl, tx, np.float32)  # float32 halves memory traffic
        if p.shadowing_sigma_db > 0:
            self._add_shadowing(rssi, tags, txyz)
        if p.fading:
            rssi += fading_db(self.rng, p.rician_k, (a, g), np.float32)
        heard = rssi >= np.float32(p.sensitivity_dbm)
        if not up.all():
            heard &= up
        if p.loss_probability > 0:
            heard &= self.rng.random((a, g), dtype=np.float32) >= np.float32(p.loss_probability)
        flat = np.flatnonzero(heard)
        adv, gw = np.divmod(flat, g)
        values = np.rint(rssi.reshape(-1)[flat])
        values = np.clip(values, RSSI_MIN_DBM, RSSI_MAX_DBM, out=values).astype(np.int8)
        channel = ADV_CHANNELS[self.rng.integers(0, ADV_CHANNELS.shape[0], size=flat.shape[0])]
        return Heard(adv.astype(np.intp), gw.astype(np.intp), values, channel)

    def _add_shadowing(self, rssi: NDArray[np.float32], tags: IntArray, txyz: FloatArray) -> None:
        """Add each advertisement's shadowing to ``rssi`` (A, G) and advance the link state.

        Gudmundson (1991) exponential correlation, simulated as an AR(1) along the tag's path:
        rho = exp(-moved / d_corr), so a static tag keeps its value and a tag that moved far
        draws a fresh one. Repeated tags in one batch are taken in rounds (the k-th occurrence
        of every tag in round k), each round vectorised.
        """
        st = self._state
        a, g = txyz.shape[0], self.n_gateways
        if a == 0:
            return
        order = np.argsort(tags, kind="stable")
        sorted_tags = tags[order]
        first = np.r_[True, sorted_tags[1:] != sorted_tags[:-1]]
        group_start = np.maximum.accumulate(np.where(first, np.arange(a), 0))
        occurrence = np.empty(a, dtype=np.intp)
        occurrence[order] = np.arange(a) - group_start
        rounds = int(occurrence.max()) + 1
        sigma = np.float32(self.params.shadowing_sigma_db)
        for k in range(rounds):
            sel = np.flatnonzero(occurrence == k) if rounds > 1 else np.arange(a)
            t = tags[sel]
            moved = np.linalg.norm(txyz[sel] - st.last_xyz[t], axis=1)
            rho = np.where(st.started[t], np.exp(-moved / self.params.shadowing_corr_m), 0.0)
            z = st.z[t]
            z *= rho.astype(np.float32)[:, None]
            innovation = self.rng.standard_normal((sel.shape[0], g), dtype=np.float32)
            innovation *= np.sqrt(1.0 - rho * rho).astype(np.float32)[:, None]
            z += innovation
            st.z[t] = z
            st.last_xyz[t] = txyz[sel]
            st.started[t] = True
            z *= sigma
            if rounds > 1:
                rssi[sel] += z
            else:
                rssi += z
