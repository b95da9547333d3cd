"""The local clock (POST/GET /__local/clock) and the events route (GET /__local/events), in process."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from werkzeug.test import Client

from local.clock import ClockApp, LocalClock
from local.events import EventsApp
from local.template import Schedule
from smscredits.adapters.clock import OffsetClock, utc_now


def clock_app(tmp_path: Path) -> tuple[ClockApp, list[tuple[str, dict[str, Any]]]]:
    invoked: list[tuple[str, dict[str, Any]]] = []

    def invoke(function: str, event: dict[str, Any]) -> Any:
        invoked.append((function, event))
        return {"ran": function}

    schedules = [
        Schedule("RefreshFunction", "cron(0 * * * ? *)"),
        Schedule("SweeperFunction", "rate(5 minutes)"),
    ]
    return ClockApp(LocalClock(tmp_path / "clock.json"), schedules, invoke), invoked


def test_advancing_moves_every_reader_of_the_file_and_runs_each_schedule_once(tmp_path: Path):
    app, invoked = clock_app(tmp_path)
    worker_clock = OffsetClock(tmp_path / "clock.json")  # what a worker process reads
    answer = Client(app).post("/", json={"advance_days": 31})
    assert answer.status_code == 200, answer.text
    body = answer.get_json()
    assert body["offset_seconds"] == 31 * 86400
    assert body["ran"] == {
        "RefreshFunction": {"ran": "RefreshFunction"},
        "SweeperFunction": {"ran": "SweeperFunction"},
    }
    assert [name for name, _ in invoked] == ["RefreshFunction", "SweeperFunction"]
    assert abs(worker_clock() - (utc_now() + timedelta(days=31))) < timedelta(seconds=5)
    assert Client(app).get("/").get_json()["offset_seconds"] == 31 * 86400


def test_setting_a_later_time_moves_there_and_an_earlier_one_is_refused(tmp_path: Path):
    app, invoked = clock_app(tmp_path)
    target = (utc_now() + timedelta(days=40)).replace(microsecond=0)
    moved = Client(app).post("/", json={"now": target.isoformat()})
    assert moved.status_code == 200, moved.text
    assert abs(OffsetClock(tmp_path / "clock.json")() - target) < timedelta(seconds=5)
    invoked.clear()
    for body in (
        {"now": utc_now().isoformat()},  # back: never
        {"advance_days": 0},
        {"advance_days": -1},
        {"advance_days": "3"},
        {"now": "tomorrow"},
        {"now": "2030-01-01T00:00:00"},  # no offset
        {},
        {"advance_days": 1, "now": target.isoformat()},
    ):
        refused = Client(app).post("/", json=body)
        assert refused.status_code == 400, body
        assert refused.get_json()["error"]["code"] == "invalid_request"
    assert invoked == []  # nothing ran for a refused move
    assert abs(OffsetClock(tmp_path / "clock.json")() - target) < timedelta(seconds=5)


def test_a_body_that_is_not_json_is_a_400(tmp_path: Path):
    app, _ = clock_app(tmp_path)
    answer = Client(app).post("/", data="{", content_type="application/json")
    assert answer.status_code == 400


def test_events_are_listed_oldest_first_and_filtered():
    published = [
        {"detail-type": "allowance.refreshed", "detail": {"account_id": "a", "allowance": 50}},
        {"detail-type": "pack.purchased", "detail": {"account_id": "b", "credits": 100}},
        {"detail-type": "allowance.refreshed", "detail": {"account_id": "b", "allowance": 75}},
    ]
    client = Client(EventsApp(lambda: published))
    everything = client.get("/").get_json()["events"]
    assert [(e["detail-type"], e["detail"]["account_id"]) for e in everything] == [
        ("allowance.refreshed", "a"),
        ("pack.purchased", "b"),
        ("allowance.refreshed", "b"),
    ]
    refreshed_b = client.get("/?detail_type=allowance.refreshed&account_id=b").get_json()["events"]
    assert refreshed_b == [
        {"detail-type": "allowance.refreshed", "detail": {"account_id": "b", "allowance": 75}}
    ]
    assert client.post("/").status_code == 405


def test_nothing_published_yet_lists_nothing():
    assert Client(EventsApp(lambda: [])).get("/").get_json() == {"events": []}
