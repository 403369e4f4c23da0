"""Server-rendered HTML for the console: escaping, the page frame, small building blocks.

Every value from data is escaped with ``esc`` (``html.escape`` with quotes);
markup is only ever made here and in ``gateway.console.routes``. Pages load no
inline script (the Content-Security-Policy forbids it): data a script needs is in
``data-`` attributes or a ``<script type="application/json">`` block, escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import orjson

__all__ = ["Nav", "esc", "frame", "json_block", "table"]

Nav = Sequence[tuple[str, str]]
"""Navigation links: (href, label)."""

STATIC = "/console/static"


def esc(value: object) -> str:
    """``value`` as HTML text (None: empty)."""
    return "" if value is None else html.escape(str(value), quote=True)


def json_block(element_id: str, data: object) -> str:
    """Data for a script, in a non-executed JSON block (``<`` escaped, so no ``</script>``)."""
    text = orjson.dumps(data).decode().replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table; cells are markup already (escape data with ``esc`` first)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">无 (none)</td></tr>'
    return (f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def frame(title: str, body: str, *, nav: Nav = (), who: str | None = None,
          csrf: str | None = None, flash: Sequence[tuple[str, str]] = (),
          scripts: Sequence[str] = ()) -> str:
    """A whole page: header with navigation and sign-out, messages, the body."""
    links = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for href, label in nav)
    account = ""
    if who is not None and csrf is not None:
        account = (f'<span class="who">{esc(who)}</span>'
                   f'<form method="post" action="/console/logout" class="inline">'
                   f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
                   f'<button type="submit" id="sign-out">退出 Sign out</button></form>')
    messages = "".join(f'<p class="flash {esc(kind)}" role="status">{esc(text)}</p>'
                       for kind, text in flash)
    tags = "".join(f'<script src="{STATIC}/{esc(name)}" defer></script>' for name in scripts)
    return f"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · 湖州电子证照互认网关</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{STATIC}/console.css">
<link rel="stylesheet" href="{STATIC}/print.css" media="print">
{tags}
</head>
<body>
<header class="top">
<a class="brand" href="/console/">湖州电子证照互认网关 · 控制台</a>
<nav>{links}</nav>
<div class="account">{account}</div>
</header>
<main>
<h1>{esc(title)}</h1>
{messages}
{body}
</main>
</body>
</html>
"""
