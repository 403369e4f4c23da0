"""Coalescing concurrent single calls into batched calls."""

from __future__ import annotations

import asyncio

import pytest

from gateway.infra.coalesce import Coalescer


class Recorder:
    """A batched call that doubles its items and remembers every batch it was given."""

    def __init__(self, *, delay: float = 0.0, fail: BaseException | None = None,
                 short: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail = fail
        self.short = short

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        answers = [2 * i for i in items]
        return answers[:-1] if self.short else answers


async def test_concurrent_calls_share_one_batch_in_order() -> None:
    """Calls made in one loop turn go out as one batch; each caller gets its own result."""
    run = Recorder()
    coalesce: Coalescer[int, int] = Coalescer(run)
    assert list(range(0, 40, 2)) == await asyncio.gather(*(coalesce(i) for i in range(20)))
    assert [list(range(20))] == run.batches


async def test_calls_during_a_batch_gather_into_the_next() -> None:
    """While one batch is in flight the next gathers; max_batch bounds each."""
    run = Recorder(delay=0.01)
    coalesce: Coalescer[int, int] = Coalescer(run, max_batch=3)
    first = asyncio.ensure_future(coalesce(0))
    await asyncio.sleep(0.001)  # batch [0] is in flight
    rest = await asyncio.gather(*(coalesce(i) for i in range(1, 6)))
    assert 0 == await first
    assert [2, 4, 6, 8, 10] == rest
    assert [[0], [1, 2, 3], [4, 5]] == run.batches


async def test_a_lone_call_is_not_delayed() -> None:
    """Without company a call is sent at the next loop turn."""
    run = Recorder()
    coalesce: Coalescer[int, int] = Coalescer(run)
    assert 14 == await asyncio.wait_for(coalesce(7), timeout=1.0)
    assert 10 == await asyncio.wait_for(coalesce(5), timeout=1.0)
    assert [[7], [5]] == run.batches


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    """The batched call's error reaches every caller of that batch, nobody else."""
    run = Recorder(fail=ConnectionError("redis went away"))
    coalesce: Coalescer[int, int] = Coalescer(run)
    results = await asyncio.gather(*(coalesce(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    run.fail = None
    assert 8 == await coalesce(4)


async def test_a_wrong_number_of_results_is_an_error_not_a_mixup() -> None:
    """A batched call that answers too few results fails the batch."""
    coalesce: Coalescer[int, int] = Coalescer(Recorder(short=True))
    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        await asyncio.gather(*(coalesce(i) for i in range(3)))


async def test_a_cancelled_caller_leaves_the_others_their_results() -> None:
    """A caller that goes away is dropped from the batch; the rest are answered."""
    run = Recorder(delay=0.01)
    coalesce: Coalescer[int, int] = Coalescer(run)
    blocker = asyncio.ensure_future(coalesce(0))
    await asyncio.sleep(0.001)
    gone = asyncio.ensure_future(coalesce(1))
    stays = asyncio.ensure_future(coalesce(2))
    await asyncio.sleep(0)
    gone.cancel()
    assert (0, 4) == (await blocker, await stays)
    assert [[0], [2]] == run.batches


async def test_worker_torn_down_mid_batch_cancels_its_waiters() -> None:
    """Nobody waits for ever when the loop's tasks are cancelled at shutdown."""
    run = Recorder(delay=10.0)
    coalesce: Coalescer[int, int] = Coalescer(run)
    waiters = [asyncio.ensure_future(coalesce(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    worker = coalesce._worker
    assert worker is not None
    worker.cancel()
    done, _ = await asyncio.wait(waiters, timeout=1.0)
    assert 3 == len(done)
    assert all(w.cancelled() for w in waiters)


class _Fatal(BaseException):
    """Not an Exception (as SystemExit or KeyboardInterrupt are not)."""


async def test_a_batched_call_raising_past_exception_leaves_nobody_waiting() -> None:
    """A BaseException that is not an Exception ends the worker, and every waiter of the
    batch, and any queued behind it, is cancelled rather than left waiting for ever."""
    run = Recorder(delay=0.01, fail=_Fatal("stop"))
    coalesce: Coalescer[int, int] = Coalescer(run)
    first = [asyncio.ensure_future(coalesce(i)) for i in range(2)]
    await asyncio.sleep(0.001)
    queued = asyncio.ensure_future(coalesce(9))
    worker = coalesce._worker
    assert worker is not None
    done, _ = await asyncio.wait([*first, queued], timeout=1.0)
    assert 3 == len(done)
    assert all(w.cancelled() for w in [*first, queued])
    with pytest.raises(_Fatal):
        await worker
    run.fail = None
    assert 10 == await asyncio.wait_for(coalesce(5), 1.0)  # a new worker serves
