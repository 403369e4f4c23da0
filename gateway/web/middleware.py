"""The gateway's one middleware: a request id, a problem body for every failure, metrics.

Every middleware layer costs every request a coroutine of its own, so one layer
does all of it:

* the request id is the caller's ``X-Request-Id`` when sane, else a new one
  (``gateway.web.logs.new_request_id``). It is set on the request, on the logging
  context while the handler runs, and on the response, problem bodies included;
* any failure becomes an RFC 9457 problem body (``gateway.web.problems.problem_for``),
  logged with the request id still in context. A redirect passes through;
* every answer is counted and timed per route, and logged as one access-log line
  (``gateway.web.observability``);
* a worker holding more than its share of the workers' connections closes some of
  them after their answer (``gateway.web.balance``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import istr

from gateway.web.balance import BalanceHolder
from gateway.web.logs import REQUEST_ID_KEY, new_request_id, request_id_var
from gateway.web.observability import HttpObserver
from gateway.web.problems import problem_for, problem_response

__all__ = ["make_request_middleware", "request_middleware"]

_X_REQUEST_ID = istr("X-Request-Id")
"""The header's name made case-insensitive once, not on every response."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_request_middleware(observer: HttpObserver | None,
                            balance: BalanceHolder | None = None) -> Middleware:
    """The middleware, reporting every answered request to ``observer`` (metrics, access log).
    With a worker's ``balance``, an answer closes its connection when the worker sheds
    connections (``gateway.web.balance``)."""

    @web.middleware
    async def request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Give the request its id, run the handler, answer failures with problem bodies."""
        started = time.perf_counter()
        request_id = new_request_id(request)
        request[REQUEST_ID_KEY] = request_id
        token = request_id_var.set(request_id)
        try:
            response = await handler(request)
        except Exception as exc:
            problem = problem_for(exc)
            if problem is None:
                raise
            response = problem_response(problem, request_id)
        finally:
            request_id_var.reset(token)
        response.headers[_X_REQUEST_ID] = request_id
        if balance is not None:
            current = balance.current
            if current is not None and current.should_shed():
                response.force_close()
        if observer is not None:
            observer.observe(request, response.status, started, request_id)
        return response

    return request_middleware


request_middleware = make_request_middleware(None)
"""The middleware without metrics or access log (for apps built in tests)."""
