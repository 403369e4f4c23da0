"""The HTTP edge every feature shares.

* ``app``: ``create_app(settings)``, the wiring of every feature's service and routes
* ``middleware``: request id, problem bodies, metrics and the access log for every request
* ``problems``: RFC 9457 problem bodies and the one table mapping errors to HTTP
* ``httpjson``: bounded JSON bodies in, JSON out
* ``auth``: bearer credentials (local systems' keys, operators' tokens)
* ``observability``: the Prometheus registry and the access log
* ``logs``: structured JSON logs with the request id
* ``runner``: serving with one graceful stop
* ``appkeys``: the typed keys of the application's state
"""
