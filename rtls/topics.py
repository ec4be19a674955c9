"""The engine's MQTT topics, in one place (docs/mqtt.md describes payloads and QoS).

Gateways publish under their own prefixes (rtls.decode.SUBSCRIPTIONS); everything the engine
publishes or listens to for alarms, actuators and badges is under ``rtls/v1/``.
"""

from __future__ import annotations

from typing import Final

POSITIONS: Final = "rtls/v1/engine/positions"
STATUS: Final = "rtls/v1/engine/status"
HEALTH: Final = "rtls/v1/engine/health"

#: Retained current state of each open alarm (JSON of Alarm.as_dict); cleared (empty retained
#: payload) when the alarm closes. Nurse-call / phone middleware subscribe to ``alarms/state/+``.
ALARM_STATE: Final = "rtls/v1/alarms/state/{alarm_id}"
ALARM_STATE_FILTER: Final = "rtls/v1/alarms/state/+"
#: Every transition, in order, QoS 1, not retained.
ALARM_EVENTS: Final = "rtls/v1/alarms/events"

#: Downlink to a tag (via the gateways): a badge's confirmation or reset, a bracelet's pairing.
DOWNLINK: Final = "rtls/v1/downlink/{tag}"
DOWNLINK_FILTER: Final = "rtls/v1/downlink/+"

#: Operator commands (acknowledge, resolve, sign-out, ...) for trusted clients on the broker
#: (the console process, tests); off unless the engine is started with commands enabled.
COMMAND: Final = "rtls/v1/command"
COMMAND_REPLY: Final = "rtls/v1/command/reply/{client}"


def alarm_state(alarm_id: int) -> str:
    return ALARM_STATE.format(alarm_id=alarm_id)


def downlink(tag: str) -> str:
    return DOWNLINK.format(tag=tag)


def tag_of_downlink(topic: str) -> str | None:
    """The tag id of a downlink topic, None if ``topic`` is not one."""
    prefix = DOWNLINK_FILTER[:-1]
    rest = topic[len(prefix) :] if topic.startswith(prefix) else ""
    return rest if rest and "/" not in rest else None
