"""Group commit: concurrent small requests share one write; failures reach every waiter."""

from __future__ import annotations

import asyncio
import threading

from monitoring_core.errors.batcher import GroupCommit


def test_it_writes_concurrent_requests_together_and_answers_each_in_order() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def write(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(5)  # hold the first write so the others queue up behind it
        return [i * 10 for i in items]

    async def scenario() -> list[list[int]]:
        commit: GroupCommit[int, int] = GroupCommit(write)
        first = asyncio.create_task(commit.submit([1]))
        await asyncio.sleep(0.05)  # the first write is now running in a thread
        rest = [asyncio.create_task(commit.submit([n, n + 1])) for n in (2, 4, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        return [await first, *[await r for r in rest]]

    answers = asyncio.run(scenario())
    assert answers == [[10], [20, 30], [40, 50], [60, 70]]
    assert calls == [[1], [2, 3, 4, 5, 6, 7]]


def test_it_caps_a_batch_and_fails_only_the_batch_that_failed() -> None:
    calls: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        calls.append(list(items))
        if 99 in items:
            raise RuntimeError("database gone")
        return items

    async def scenario() -> tuple[BaseException | list[int], ...]:
        commit: GroupCommit[int, int] = GroupCommit(write, max_items=2)
        tasks = [asyncio.create_task(commit.submit(items)) for items in ([1], [2], [99, 98], [3])]
        return tuple(await asyncio.gather(*tasks, return_exceptions=True))

    one, two, bad, three = asyncio.run(scenario())
    assert (one, two, three) == ([1], [2], [3])
    assert isinstance(bad, RuntimeError)
    assert calls == [[1, 2], [99, 98], [3]]


def test_it_calls_on_idle_once_the_queue_has_run_dry_and_never_during_a_write() -> None:
    events: list[str] = []
    gate = threading.Event()

    def write(items: list[int]) -> list[int]:
        events.append(f"write {items}")
        if len(events) == 1:
            gate.wait(5)  # the others queue up behind the first write
        return items

    async def scenario() -> None:
        commit: GroupCommit[int, int] = GroupCommit(write, on_idle=lambda: events.append("idle"))
        first = asyncio.create_task(commit.submit([1]))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(commit.submit([n])) for n in (2, 3)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(first, *rest)
        await commit.submit([4])  # a new run after the queue ran dry: idle again after it

    asyncio.run(scenario())
    assert events == ["write [1]", "write [2, 3]", "idle", "write [4]", "idle"]
