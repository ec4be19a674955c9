"""Rule parameters of a site (the ``[rules]`` table of the site file).

Defaults follow the field figures in DOMAIN.md: infant heartbeats every 1.4–10 s (vendors),
loiter near an exit 30–600 s, mother pairing within 1 h, DGUV pre-alarm under 45 s and at most
90 s from onset to alarm for position / no-movement alarms. The rules engine (later issues)
reads these; the simulators use the heartbeat intervals and badge timings.
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TagRules(_Params):
    """Per tag kind: heartbeat and supervision (tag silent) timing, battery threshold."""

    heartbeat_s: float = Field(default=2.0, ge=0.1, le=25.5)
    supervision_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    low_battery_pct: int = Field(default=20, ge=1, le=99)
    burst_repeats: int = Field(default=3, ge=0, le=20)
    burst_interval_s: float = Field(default=0.1, ge=0.02, le=2.0)
    # rtls.conditions: a raised condition clears only after its clearing criterion held this
    # long (no flapping); low battery clears only at low_battery_pct + this hysteresis
    clear_hold_s: float = Field(default=5.0, ge=0.0, le=600.0)
    low_battery_hysteresis_pct: int = Field(default=5, ge=0, le=50)

    @model_validator(mode="after")
    def _supervision_covers_heartbeats(self) -> TagRules:
        if self.supervision_s < 3 * self.heartbeat_s:
            raise ValueError(
                f"supervision_s ({self.supervision_s}) must allow at least 3 missed heartbeats "
                f"({3 * self.heartbeat_s} s at heartbeat_s={self.heartbeat_s})"
            )
        if self.low_battery_pct + self.low_battery_hysteresis_pct > 100:
            raise ValueError(
                f"low_battery_pct + low_battery_hysteresis_pct = "
                f"{self.low_battery_pct + self.low_battery_hysteresis_pct} exceeds 100 %"
            )
        return self


class InfantRules(TagRules):
    """Infant bracelet rules."""

    heartbeat_s: float = Field(default=2.0, ge=0.1, le=25.5)
    supervision_s: float = Field(default=20.0, ge=1.0, le=3600.0)
    exit_dwell_s: float = Field(default=0.0, ge=0.0, le=30.0)
    loiter_s: float = Field(default=60.0, ge=30.0, le=600.0)
    pairing_window_s: float = Field(default=3600.0, ge=60.0, le=86400.0)
    sign_out_max_s: float = Field(default=3600.0, ge=60.0, le=86400.0)
    # rtls.conditions (docs/rules.md): skin contact lost this long -> tag_loose; out of the
    # exit zone this long -> the exit condition clears; an escort is "near" within this
    # distance, or read by the same door reader within escort_wait_s, which is also how long a
    # signed-out baby at an exit waits for its escort to be seen before the exit raises
    tag_loose_s: float = Field(default=10.0, ge=1.0, le=600.0)
    exit_clear_s: float = Field(default=10.0, ge=0.0, le=600.0)
    # the loiter clock keeps running through absences from the zone shorter than this (RSSI
    # membership of a small zone flickers; someone loitering moves about)
    loiter_gap_s: float = Field(default=15.0, ge=0.0, le=120.0)
    escort_distance_m: float = Field(default=3.0, ge=0.5, le=20.0)
    escort_wait_s: float = Field(default=5.0, ge=0.0, le=30.0)
    # mismatch: the bracelet's flag must have held this long, advertisement after
    # advertisement, before it counts (a mother passing a carried baby in a corridor is in
    # range for under a second; one who takes the wrong baby holds it for minutes)
    mismatch_hold_s: float = Field(default=5.0, ge=0.0, le=60.0)


class StaffRules(TagRules):
    """Staff badge (lone worker) rules; the badge firmware uses the man-down parameters."""

    heartbeat_s: float = Field(default=2.0, ge=0.1, le=25.5)
    supervision_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    tilt_deg: float = Field(default=45.0, ge=20.0, le=90.0)
    tilt_hold_s: float = Field(default=30.0, ge=5.0, le=120.0)
    no_movement_s: float = Field(default=60.0, ge=10.0, le=600.0)
    pre_alarm_s: float = Field(default=20.0, ge=5.0, le=45.0)
    check_in_s: float = Field(default=0.0, ge=0.0, le=86400.0)
    show_position: bool = False
    confirm_resend_s: float = Field(default=5.0, ge=1.0, le=60.0)  # downlink until confirmed

    @model_validator(mode="after")
    def _dguv_time_to_trigger(self) -> StaffRules:
        # DGUV (DOMAIN.md): pre-alarm under 45 s, at most 90 s to trigger position alarms.
        if self.tilt_hold_s + self.pre_alarm_s > 90.0:
            raise ValueError(
                f"tilt_hold_s + pre_alarm_s = {self.tilt_hold_s + self.pre_alarm_s} s exceeds "
                "DGUV's 90 s maximum time to trigger"
            )
        return self


class GatewayRules(_Params):
    """Technical supervision of the infrastructure."""

    gateway_silent_s: float = Field(default=30.0, ge=5.0, le=3600.0)
    reader_silent_s: float = Field(default=60.0, ge=5.0, le=3600.0)
    health_interval_s: float = Field(default=10.0, ge=1.0, le=600.0)
    batch_interval_s: float = Field(default=0.25, ge=0.02, le=5.0)
    # rtls.conditions: no silence alarm until this long after the first evaluation or after
    # the broker link came back; broker_link_lost after the link is down this long; a
    # technical condition clears after its source is heard again for clear_hold_s
    startup_grace_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    broker_lost_s: float = Field(default=10.0, ge=0.0, le=600.0)
    clear_hold_s: float = Field(default=10.0, ge=0.0, le=3600.0)


class ActuatorRules(_Params):
    """Door locks and elevator holds (rtls.actuators, docs/actuators.md): a command not
    confirmed by the controller's state report within ``confirm_timeout_s`` is sent again,
    the wait doubling up to ``max_backoff_s``."""

    confirm_timeout_s: float = Field(default=5.0, ge=0.5, le=300.0)
    max_backoff_s: float = Field(default=60.0, ge=1.0, le=3600.0)

    @model_validator(mode="after")
    def _backoff_covers_timeout(self) -> ActuatorRules:
        if self.max_backoff_s < self.confirm_timeout_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be >= confirm_timeout_s "
                f"({self.confirm_timeout_s})"
            )
        return self


class EscalationStep(_Params):
    """One step of an escalation chain: notify ``group`` ``after_s`` after the alarm was raised
    if nobody has acknowledged it by then."""

    group: str = Field(min_length=1)
    after_s: float = Field(ge=0.0, le=86400.0)


#: DOMAIN.md: these alarms latch (stay until resolved); a site may not make them non-latching.
ALWAYS_LATCHING: frozenset[str] = frozenset(
    {"exit", "tamper", "code_pink", "sos", "pull_cord", "man_down", "tag_spoofing"}
)
ALARM_TYPES: frozenset[str] = frozenset({
    "exit", "tamper", "tag_loose", "tag_silent", "restricted_zone", "loiter", "mismatch",
    "code_pink", "low_battery", "sign_out_overdue", "pairing_overdue", "sos", "pull_cord",
    "pre_alarm", "man_down", "no_movement", "fall", "check_in_missed", "gateway_silent",
    "reader_silent", "broker_link_lost", "tag_spoofing",
})  # fmt: skip


class AlarmTypeRules(_Params):
    """Per alarm type overrides of the catalogue (rtls.alarm.CATALOGUE)."""

    priority: Literal["high", "medium", "low"] | None = None
    latching: bool | None = None
    rise_after_s: float | None = Field(default=None, ge=0.0, le=86400.0)


def _default_escalation() -> dict[str, list[EscalationStep]]:
    return {
        "high": [EscalationStep(group="ward_nurses", after_s=0.0),
                 EscalationStep(group="security", after_s=30.0),
                 EscalationStep(group="duty_manager", after_s=120.0)],
        "medium": [EscalationStep(group="ward_nurses", after_s=0.0),
                   EscalationStep(group="security", after_s=180.0)],
        "low": [EscalationStep(group="technicians", after_s=0.0)],
    }  # fmt: skip


class AlarmRules(_Params):
    """The ``[rules.alarms]`` table: escalation chains per priority, per-type overrides, the
    longest shelving and who sees a lone worker's position."""

    escalation: dict[str, list[EscalationStep]] = Field(default_factory=_default_escalation)
    types: dict[str, AlarmTypeRules] = Field(default_factory=dict)
    shelve_max_s: float = Field(default=8 * 3600.0, ge=60.0, le=7 * 86400.0)

    @model_validator(mode="after")
    def _check(self) -> AlarmRules:
        for name, o in self.types.items():
            if name not in ALARM_TYPES:
                raise ValueError(f"unknown alarm type {name!r} in [rules.alarms.types]")
            if name in ALWAYS_LATCHING and o.latching is False:
                raise ValueError(f"alarm type {name!r} always latches (DOMAIN.md)")
        for prio, steps in self.escalation.items():
            if prio not in ("high", "medium", "low"):
                raise ValueError(f"escalation.{prio}: priorities are high, medium and low")
            times = [s.after_s for s in steps]
            if steps and times[0] != 0.0:
                raise ValueError(f"escalation.{prio}: the first step must have after_s = 0")
            if any(b <= a for a, b in itertools.pairwise(times)):
                raise ValueError(f"escalation.{prio}: after_s must increase step by step")
        return self


class RuleParams(_Params):
    """The ``[rules]`` table: ``[rules.infant]``, ``[rules.mother]``, ``[rules.staff]``, ..."""

    infant: InfantRules = Field(default_factory=InfantRules)
    mother: TagRules = Field(default_factory=lambda: TagRules(heartbeat_s=3.0, supervision_s=60.0))
    staff: StaffRules = Field(default_factory=StaffRules)
    reference: TagRules = Field(
        default_factory=lambda: TagRules(heartbeat_s=5.0, supervision_s=120.0)
    )
    infrastructure: GatewayRules = Field(default_factory=GatewayRules)
    actuators: ActuatorRules = Field(default_factory=ActuatorRules)
    alarms: AlarmRules = Field(default_factory=AlarmRules)

    _ZONE_KEYS: ClassVar[frozenset[str]] = frozenset({"exit_dwell_s", "loiter_s", "dwell_s"})

    def for_kind(self, kind: str) -> TagRules:
        """Rules for a tag kind name (``infant``, ``mother``, ``staff``, ``reference``)."""
        rules: TagRules = getattr(self, kind)
        return rules

    @classmethod
    def zone_override_keys(cls) -> frozenset[str]:
        """Rule keys a zone may override in its ``rules`` table."""
        return cls._ZONE_KEYS
