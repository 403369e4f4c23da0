"""gateway.infra.crypto_thread: calls run on one thread beside the loop, in batches."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.infra.crypto_thread import MAX_BATCH, CryptoThread, CryptoThreadClosedError


def _ident() -> int:
    return threading.get_ident()


def _fails(message: str) -> None:
    raise ValueError(message)


async def test_runs_on_its_own_thread_and_inline_when_disabled() -> None:
    """Enabled: not the loop's thread. Disabled: the loop's thread, nothing counted."""
    crypto, inline = CryptoThread(), CryptoThread(enabled=False)
    try:
        assert threading.get_ident() != await crypto.run(_ident)
        assert threading.get_ident() == await inline.run(_ident)
        assert (1, 1) == (crypto.calls, crypto.batches)
        assert (0, 0) == (inline.calls, inline.batches)
    finally:
        await crypto.close()
        await inline.close()


async def test_each_call_gets_its_own_result_or_exception() -> None:
    """A failing call fails only its caller; the others in its batch get their results."""
    crypto = CryptoThread()
    try:
        results = await asyncio.gather(
            crypto.run(pow, 2, 10), crypto.run(_fails, "second"), crypto.run(pow, 3, 2),
            return_exceptions=True)
        assert 1024 == results[0]
        assert isinstance(results[1], ValueError)
        assert "second" == str(results[1])
        assert 9 == results[2]
        assert 1 == crypto.batches  # all three were queued before the first hand-off
    finally:
        await crypto.close()


async def test_calls_queued_while_a_batch_runs_share_the_next_hand_off() -> None:
    """Under load one hand-off carries many calls, at most MAX_BATCH."""
    crypto = CryptoThread()
    try:
        first = asyncio.ensure_future(crypto.run(time.sleep, 0.1))
        await asyncio.sleep(0.02)  # the first batch (one call) is on the thread now
        rest = [crypto.run(pow, n, 2) for n in range(MAX_BATCH + 10)]
        results = await asyncio.gather(*rest)
        await first
        assert [n * n for n in range(MAX_BATCH + 10)] == results
        # One batch for the sleeper, then MAX_BATCH and the 10 left over.
        assert (MAX_BATCH + 11, 3) == (crypto.calls, crypto.batches)
    finally:
        await crypto.close()


async def test_signatures_made_on_the_thread_verify() -> None:
    """ECDSA through the thread: what it signs verifies, and a bad signature is refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    crypto = CryptoThread()
    try:
        signatures = await asyncio.gather(*(crypto.run(key.sign, f"m{n}".encode(), algorithm)
                                            for n in range(20)))
        public = key.public_key()
        await asyncio.gather(*(crypto.run(public.verify, sig, f"m{n}".encode(), algorithm)
                               for n, sig in enumerate(signatures)))
        with pytest.raises(InvalidSignature):
            await crypto.run(public.verify, signatures[0], b"m1", algorithm)
    finally:
        await crypto.close()


class _Fatal(BaseException):
    """Not an Exception: what a bare ``except Exception`` would let through."""


def _fatal() -> None:
    raise _Fatal("stop")


async def test_a_base_exception_fails_only_its_call() -> None:
    """Even a BaseException from one call reaches that caller; its batch mates are answered
    and the thread keeps serving."""
    crypto = CryptoThread()
    try:
        done = await asyncio.wait_for(asyncio.gather(
            crypto.run(pow, 2, 3), crypto.run(_fatal), crypto.run(pow, 2, 4),
            return_exceptions=True), 2)
        assert 8 == done[0]
        assert isinstance(done[1], _Fatal)
        assert 16 == done[2]
        assert 9 == await asyncio.wait_for(crypto.run(pow, 3, 2), 2)
    finally:
        await crypto.close()


async def test_close_waits_for_the_running_batch_then_refuses() -> None:
    """A call already on the thread finishes; calls after close are refused; close twice is
    harmless; the thread is gone."""
    crypto = CryptoThread(name="closing-crypto")
    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.1)
        finished.set()

    running = asyncio.ensure_future(crypto.run(slow))
    await asyncio.sleep(0.02)
    await crypto.close()
    assert finished.is_set()  # close returned only once the batch on the thread was done
    await asyncio.wait_for(running, 1)
    assert running.exception() is None
    assert not [t for t in threading.enumerate() if t.name.startswith("closing-crypto")]
    with pytest.raises(CryptoThreadClosedError):
        await crypto.run(pow, 2, 2)
    await crypto.close()
    inline = CryptoThread(enabled=False)
    await inline.close()
    with pytest.raises(CryptoThreadClosedError):
        await inline.run(pow, 2, 2)
