"""Hypothesis strategies for the trust-core tests that share them, kept in one module."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Names chosen to collide, to look like the separators the duplicate check counts
# (a quote, a colon, both), and to differ only in spelling once escaped.
MEMBER_NAMES = st.sampled_from(["iss", "a", "A", "lic", ":", '":', ":a", 'a"', "\\", "é", "证照",
                                ""])
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
            | st.text(max_size=6) | st.sampled_from([":", '":', '"', ": x", '\\":', "a\\"]))

# A JSON value as a tree whose objects are lists of (name, value) pairs, so that a
# name may repeat: ("s", scalar) | ("l", [tree]) | ("o", [(name, tree)]).
trees: st.SearchStrategy[Any] = st.recursive(
    _SCALARS.map(lambda v: ("s", v)),
    lambda children: (st.lists(children, max_size=4).map(lambda v: ("l", v))
                      | st.lists(st.tuples(MEMBER_NAMES, children), max_size=4)
                      .map(lambda v: ("o", v))),
    max_leaves=16,
)
_WHITESPACE = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  "])


def _escaped(text: str) -> str:
    """``text`` as a JSON string with every character written as a \\u escape."""
    return '"' + "".join(json.dumps(c)[1:-1] if ord(c) > 0xFFFF else f"\\u{ord(c):04x}"
                         for c in text) + '"'


@st.composite
def _string(draw: st.DrawFn, text: str) -> str:
    style = draw(st.sampled_from(["utf-8", "ascii", "escaped"]))
    if style == "escaped":
        return _escaped(text)
    return json.dumps(text, ensure_ascii=style == "ascii")


@st.composite
def _render(draw: st.DrawFn, tree: Any) -> str:
    kind, content = tree
    if kind == "s":
        return draw(_string(content)) if isinstance(content, str) else json.dumps(content)
    if kind == "l":
        items = [draw(_WHITESPACE) + draw(_render(c)) + draw(_WHITESPACE) for c in content]
        return "[" + ",".join(items) + draw(_WHITESPACE) + "]"
    members = [draw(_WHITESPACE) + draw(_string(name)) + draw(_WHITESPACE) + ":"
               + draw(_WHITESPACE) + draw(_render(value)) + draw(_WHITESPACE)
               for name, value in content]
    return "{" + ",".join(members) + draw(_WHITESPACE) + "}"


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """A JSON text (UTF-8) in any layout and spelling, whose objects may repeat a name."""
    return draw(_render(draw(trees))).encode("utf-8")
