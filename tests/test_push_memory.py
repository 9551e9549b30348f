"""Memory stays bounded under large Pushgateway pushes: series keys hold only their own bytes,
and large pushes are handled a few at a time (the others wait in line, then 503)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import HTTPException

from monitoring_core.api.heavy import HeavyGate
from monitoring_core.api.routes_health import HEAVY_PUSH_BYTES, HEAVY_PUSHES
from monitoring_core.prometheus import parse_exposition, samples_to_batch


def _body(series: int, family: str = "job_items_total") -> bytes:
    lines = [f"# TYPE {family} counter"]
    lines += [f'{family}{{queue="q{i}",region="uk"}} {i}' for i in range(series)]
    return ("\n".join(lines) + "\n").encode()


def test_cached_series_keys_hold_their_own_size_not_orjsons_buffer() -> None:
    body = _body(5_000)
    parsed = parse_exposition(body, memo={})
    memo: dict[Any, Any] = {}
    gc.collect()
    tracemalloc.start()
    try:
        batch = samples_to_batch(parsed, {"job": "nightly"}, now=datetime.now(UTC), memo=memo)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(batch) == 5_001
    # Before: ~4 KB a key (orjson's output buffer), ~20 MB here. Now a few hundred bytes.
    assert current / len(memo) < 600, current / len(memo)


def test_the_gate_lets_slots_through_and_answers_503_after_waiting() -> None:
    async def scenario() -> tuple[int, list[int]]:
        gate = HeavyGate(slots=2, wait_s=0.2, retry_after_s=7)
        inside = peak = 0
        outcomes: list[int] = []

        async def request() -> None:
            nonlocal inside, peak
            try:
                async with gate.slot("pushes"):
                    inside += 1
                    peak = max(peak, inside)
                    await asyncio.sleep(0.15)
                    inside -= 1
                outcomes.append(202)
            except HTTPException as exc:
                assert exc.headers == {"Retry-After": "7"}
                outcomes.append(exc.status_code)

        await asyncio.gather(*(request() for _ in range(6)))
        return peak, sorted(outcomes)

    peak, outcomes = asyncio.run(scenario())
    assert peak == 2  # never more than the slots at once
    # 2 go in at once, 2 more after 0.15 s; the last 2 would start at 0.3 s > 0.2 s of waiting.
    assert outcomes == [202, 202, 202, 202, 503, 503]


def test_large_pushes_are_gated_and_small_ones_are_not(
    api_app: Any, api_server: str, ingest_key: str
) -> None:
    headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "text/plain"}
    small = _body(10)
    large = _body(4_000)
    assert len(small) < HEAVY_PUSH_BYTES < len(large)
    r = httpx.put(f"{api_server}/metrics/job/small", content=small, headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    assert "heavy_pushes" not in api_app.state.caches
    r = httpx.put(f"{api_server}/metrics/job/large", content=large, headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 4_000
    gate = api_app.state.caches["heavy_pushes"]
    assert gate.slots == HEAVY_PUSHES and gate.waiting == 0


def test_a_full_gate_answers_503_with_retry_after(
    api_app: Any, api_server: str, ingest_key: str
) -> None:
    gate = HeavyGate(slots=1, wait_s=0.05)
    gate._semaphore = asyncio.Semaphore(0)  # every slot taken (bound to the server's loop on use)
    api_app.state.caches["heavy_pushes"] = gate
    headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "text/plain"}
    r = httpx.put(f"{api_server}/metrics/job/x", content=_body(4_000), headers=headers, timeout=60)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert "too many large pushes" in r.json()["detail"]
