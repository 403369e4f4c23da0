"""The operators' and auditors' web console at ``/console/`` (docs/console.md).

Server-rendered pages over the same services and role checks as the HTTP API;
its scripts, styles and chart library ship in ``static/`` (the gateway runs
offline, no CDN).
"""

from gateway.console.routes import setup

__all__ = ["setup"]
