"""Serving the application: what ``ecert-gateway serve`` runs, in place of ``web.run_app``.

The stop signals are handled differently from ``run_app``. The first SIGTERM or
SIGINT starts one graceful stop: the listening socket closes, requests in flight
finish (up to ``shutdown_timeout_s``), then the cleanup contexts close, last
opened first. A signal that comes while stopping is logged and changes nothing.
Under ``run_app`` a second signal raised ``GracefulExit`` again, and its exit path
then cancelled every task, the stop under way among them: cleanup contexts were
cut off half-way (the licence store closing, the audit writer draining), requests
in flight went unanswered, and the process ended with
``CleanupError('Multiple errors on cleanup stage', [CancelledError(), ...])`` and
exit status 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from gateway.settings import Settings

__all__ = ["STOP_SIGNALS", "serve"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_log = logging.getLogger("gateway.http")


async def _serve(app: web.Application, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if stopping.is_set():
            _log.warning("%s again: already stopping; the stop under way continues", sig.name)
            return
        _log.info("%s: stopping", sig.name)
        stopping.set()

    for sig in STOP_SIGNALS:  # before start-up: a signal then stops once start-up is done
        loop.add_signal_handler(sig, on_signal, sig)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout_s)
    await runner.setup()
    try:
        if not stopping.is_set():
            await web.TCPSite(runner, settings.host, settings.port).start()
            await stopping.wait()
    finally:
        await runner.cleanup()
        _log.info("stopped")
        # Stopped: from here a signal could only turn a clean exit into a kill. (Removing
        # the loop's handler gives a signal its default action back; replaced at once.)
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)


def serve(app: web.Application, settings: Settings) -> None:
    """Serve ``app`` on ``settings.listen`` until SIGTERM or SIGINT, then stop gracefully:
    stop accepting, let requests in flight finish (``shutdown_timeout_s``), close every
    cleanup context. Signals repeated while stopping are logged and ignored."""
    asyncio.run(_serve(app, settings))
