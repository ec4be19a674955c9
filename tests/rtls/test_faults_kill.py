"""Fault: the engine is SIGKILLed at random moments while alarms are raised, acknowledged and
resolved (the short run of bench/kill_trials.py, which runs the 100 trials).

Real parts: Mosquitto, ``rtls engine`` as a child process on one SQLite store for all trials,
commands over the MQTT command topic. After each kill: every alarm announced and every command
answered ok before it is in the store; after each restart every open alarm is published
again with its stored state; the audit chain verifies (tests/rtls/test_service_alarms.py
also checks one kill in detail: timers and acknowledgements intact).
"""

from __future__ import annotations

from pathlib import Path

from bench.kill_trials import run_trials, summary
from rtls.service.broker import MosquittoBroker

TRIALS = 5
SEED = 11


def test_sigkill_at_random_moments_loses_nothing(
    fresh_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    trials, first = run_trials(TRIALS, SEED, tmp_path, port=fresh_mosquitto.port, kill_max_s=2.0,
                        log=False)  # fmt: skip
    out = summary(trials, first)
    print(out)
    assert len(trials) == TRIALS
    failed = [t for t in trials if not t.ok]
    assert not failed, failed
    # the kills hit a system at work: alarms announced and commands answered before them
    assert out["alarms_raised_before_kills"] >= TRIALS
    assert out["commands_ok_before_kills"] >= TRIALS
    assert out["alarms_lost"] == out["commands_lost"] == out["not_republished"] == 0
