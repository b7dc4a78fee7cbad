"""Systemd.run_jobs feeds jobs to systemd a window at a time: its bookkeeping, against a fake bus on
which a job finishes each time the caller waits (the real thing is proven by the apply box tests and
bench/bench_scale.py's apply of 1000)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sandbox_service import systemd
from sandbox_service.errors import SandboxError


class _Empty:
    def is_empty(self) -> bool:
        return True


class FakeBus:
    """Finishes the oldest queued job at each wait(), unless stalled."""

    def __init__(self, sd: systemd.Systemd, *, stalled: bool = False) -> None:
        self.sd, self.stalled = sd, stalled
        self.queued: list[bytes] = []
        self.most_in_flight = 0

    def process(self) -> _Empty:
        return _Empty()

    def wait(self, _usec: int) -> None:
        if self.queued and not self.stalled:
            self.sd._job_results[self.queued.pop(0)] = "done"


def fake_systemd(
    *, refuse: frozenset[str] = frozenset(), stalled: bool = False
) -> tuple[systemd.Systemd, FakeBus]:
    sd = object.__new__(systemd.Systemd)
    sd._job_results = {}
    bus = FakeBus(sd, stalled=stalled)
    sd._bus = bus

    def submit(verb: str, units: Sequence[str]) -> dict[str, bytes]:
        (unit,) = units
        if unit in refuse:
            raise SandboxError(f"no {verb} for {unit}")
        job = f"/job/{verb}/{unit}".encode()
        bus.queued.append(job)
        bus.most_in_flight = max(bus.most_in_flight, len(bus.queued))
        return {unit: job}

    sd.submit = submit  # type: ignore[method-assign]
    return sd, bus


def test_no_more_than_the_window_is_queued_and_every_job_finishes() -> None:
    sd, bus = fake_systemd()
    requests = [("start", f"u{i}.service") for i in range(10)]
    seen: list[tuple[int, int]] = []
    results = sd.run_jobs(requests, window=3, progress=lambda done, total: seen.append((done, total)))
    assert results == {f"u{i}.service": "done" for i in range(10)}
    assert bus.most_in_flight == 3
    assert seen[-1] == (10, 10)


def test_a_refused_unit_is_reported_and_the_others_go_on() -> None:
    sd, _bus = fake_systemd(refuse=frozenset({"u2.service"}))
    refused: list[str] = []
    results = sd.run_jobs(
        [("start", f"u{i}.service") for i in range(5)], window=2, refused=lambda u, _e: refused.append(u)
    )
    assert refused == ["u2.service"]
    assert sorted(results) == ["u0.service", "u1.service", "u3.service", "u4.service"]


def test_a_refusal_raises_without_a_handler() -> None:
    sd, _bus = fake_systemd(refuse=frozenset({"u0.service"}))
    with pytest.raises(SandboxError):
        sd.run_jobs([("start", "u0.service")], window=2)


def test_jobs_that_stop_making_progress_time_out_and_the_rest_is_not_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(systemd, "JOB_TIMEOUT_SEC", 0.05)
    sd, _bus = fake_systemd(stalled=True)
    results = sd.run_jobs([("start", f"u{i}.service") for i in range(4)], window=2)
    assert results == {
        "u0.service": "timeout",
        "u1.service": "timeout",
        "u2.service": "not-queued",
        "u3.service": "not-queued",
    }
