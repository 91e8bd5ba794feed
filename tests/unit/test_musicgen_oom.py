"""A cohort that runs out of device memory is decoded in halves, and later cohorts are capped at the size
that fitted; only a single row that does not fit fails (its job alone). The device is stood in for by a
`run_cohort` that raises torch's own OutOfMemoryError above a row count."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from soundstage_musicgen import scheduler
from soundstage_musicgen.scheduler import CohortScheduler


def fake_row(name: str, frames: int = 4) -> Any:
    return SimpleNamespace(name=name, context=torch.zeros(4, frames), result=None)


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A device that holds ``fits`` rows at once; records each call's rows."""
    state: dict[str, Any] = {"fits": 2, "calls": []}

    def run_cohort(_: object, rows: list[Any]) -> None:
        state["calls"].append([row.name for row in rows])
        if len(rows) > state["fits"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        for row in rows:
            row.result = f"tokens of {row.name}"

    monkeypatch.setattr(scheduler, "run_cohort", run_cohort)
    return state


def test_an_oom_cohort_is_split_and_the_cap_follows(device: dict[str, Any]) -> None:
    decoder = CohortScheduler(loaded=None, max_rows=8)  # type: ignore[arg-type]
    rows = [fake_row(f"take{index}") for index in range(5)]
    decoder.run(rows)  # one job's five takes
    assert [row.result for row in rows] == [f"tokens of take{index}" for index in range(5)]
    takes = [f"take{index}" for index in range(5)]
    assert device["calls"] == [takes, takes[:2], takes[2:], takes[2:3], takes[3:]]  # halves until they fit
    assert decoder.max_rows == 2
    device["calls"].clear()
    more = [fake_row(f"next{index}") for index in range(2)]
    decoder.run(more)
    assert device["calls"] == [["next0", "next1"]]  # within the cap: no failed attempt first


def test_a_single_row_that_does_not_fit_fails_its_job_alone(device: dict[str, Any]) -> None:
    device["fits"] = 0
    decoder = CohortScheduler(loaded=None, max_rows=4)  # type: ignore[arg-type]
    with pytest.raises(torch.OutOfMemoryError):
        decoder.run([fake_row("huge")])
    assert device["calls"] == [["huge"]] and decoder.max_rows == 4  # nothing to split, nothing learnt


def test_other_errors_are_not_split(device: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def broken(_: object, rows: list[Any]) -> None:
        calls.append(len(rows))
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(scheduler, "run_cohort", broken)
    decoder = CohortScheduler(loaded=None, max_rows=4)  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def job() -> None:
        try:
            decoder.run([fake_row("a"), fake_row("b")])
        except RuntimeError as error:
            errors.append(error)

    worker = threading.Thread(target=job)
    worker.start()
    worker.join(30)
    assert calls == [2] and len(errors) == 1 and decoder.max_rows == 4


def test_the_device_check_touches_the_device() -> None:
    from soundstage.device_faults import check_device

    assert check_device("cpu") is None
    answer = check_device("cuda:0")
    if torch.cuda.is_available():
        assert answer is None
    else:  # no device to touch: the check says so instead of passing
        assert answer is not None and answer.startswith("device cuda:0 failed a test operation")
