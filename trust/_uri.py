"""Status-list URIs judged against a partner's registered prefixes, component by component.

A licence names the URI of its status list, and the gateway fetches it only
when the URI lies under one of its partner's ``status_uri_prefixes``. A string
prefix test does not say that: HTTP clients and servers remove dot segments
(RFC 3986 5.2.4), in any percent-encoding, so ``https://gw/status/../admin``
and ``https://gw/status/%2e%2e/admin`` start with ``https://gw/status/`` and
are fetched as ``https://gw/admin``; ``https://gw/status`` is a string prefix
of ``https://gw/statusX`` and ``http://gw:8`` of ``http://gw:8080``.

So a status URI is parsed and refused outright when anything in it could be
read two ways (``status_uri_problem``): characters outside RFC 3986 (a
backslash, a space, anything not ASCII), a malformed percent-escape, a scheme
other than ``http``/``https``, userinfo, a fragment, an empty host, a port
that is not a number, a dot segment in any encoding or case (``..``,
``%2e%2E``, ``.%2e``, ``..;x``, ``...``, a fullwidth ``．．``), an encoded
``/``, ``\\`` or ``%`` (which a server decoding twice would turn into a
separator or a dot), escapes that are not UTF-8 (the overlong ``%c0%ae``), a
control character, or an empty segment (``//``).

Then ``uri_under_prefix`` compares scheme, host and port (the scheme's
default when absent) for equality, and the path by whole segments after
RFC 3986 6.2.2 normalisation (case of percent-escapes, unreserved characters
decoded): a prefix ending in ``/`` admits what lies beneath it, one without
admits itself and what lies beneath it, never a sibling that merely starts
with the same characters (``/status`` never admits ``/statusX``).
"""

from __future__ import annotations

import string
import unicodedata

__all__ = ["status_uri_problem", "uri_under_prefix"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# RFC 3986 2.2 and 2.3: gen-delims, sub-delims, unreserved, and "%" for escapes.
_URI_CHARS = _UNRESERVED | frozenset(":/?#[]@!$&'()*+,;=%")
_HEX = frozenset(string.hexdigits)
_FORBIDDEN_DECODED = frozenset("/\\%")
"""Encoded, these would become a separator, or an escape a second decoding acts on."""


class _UnsafeURIError(ValueError):
    """The URI cannot be judged safely; the message says why."""


def _check_escapes(text: str) -> None:
    index = text.find("%")
    while index >= 0:
        escape = text[index + 1:index + 3]
        if len(escape) != 2 or not set(escape) <= _HEX:
            raise _UnsafeURIError("a malformed percent-escape")
        index = text.find("%", index + 3)


def _decode(segment: str) -> str:
    """Percent-decode one path segment as UTF-8, then NFKC (as the laxest server would)."""
    raw = bytearray()
    index = 0
    while index < len(segment):
        if segment[index] == "%":
            raw.append(int(segment[index + 1:index + 3], 16))
            index += 3
        else:
            raw.append(ord(segment[index]))
            index += 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # overlong forms such as %C0%AE among them
        raise _UnsafeURIError(
            f"escapes that are not UTF-8 in the path segment {segment!r}") from exc
    # A fullwidth dot or solidus (U+FF0E, U+FF0F) becomes "." or "/" under NFKC.
    return unicodedata.normalize("NFKC", text)


def _normalise(segment: str) -> str:
    """RFC 3986 6.2.2.1-2: unreserved characters decoded, other escapes in upper case."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        if segment[index] == "%":
            char = chr(int(segment[index + 1:index + 3], 16))
            out.append(char if char in _UNRESERVED else segment[index:index + 3].upper())
            index += 3
        else:
            out.append(segment[index])
            index += 1
    return "".join(out)


def _authority(authority: str, scheme: str) -> tuple[str, int]:
    """Host (lower case) and port (the scheme's default when absent) of ``authority``."""
    if "@" in authority:
        raise _UnsafeURIError("userinfo in the authority")
    if "%" in authority:
        raise _UnsafeURIError("a percent-escape in the host")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _UnsafeURIError("an unterminated IP literal")
        host, rest = authority[:end + 1], authority[end + 1:]
        if rest and not rest.startswith(":"):
            raise _UnsafeURIError("text after the IP literal")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = authority.partition(":")
        if ":" in port_text or "[" in authority or "]" in authority:
            raise _UnsafeURIError("a malformed authority")
    if not host or host == "[]":
        raise _UnsafeURIError("no host")
    if port_text == "":
        return host.lower(), _DEFAULT_PORTS[scheme]
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise _UnsafeURIError("a port that is not a number from 1 to 65535")
    return host.lower(), int(port_text)


def _parse(uri: str) -> tuple[str, str, int, tuple[str, ...], str | None]:
    """Scheme, host, port, normalised path segments and query of ``uri``; or ``_UnsafeURIError``."""
    if not uri:
        raise _UnsafeURIError("an empty URI")
    odd = next((char for char in uri if char not in _URI_CHARS), None)
    if odd is not None:
        raise _UnsafeURIError(f"the character {odd!r}, which RFC 3986 does not allow in a URI")
    _check_escapes(uri)
    if "#" in uri:
        raise _UnsafeURIError("a fragment")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise _UnsafeURIError("a scheme other than http:// or https://")
    authority_end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0),
                        default=len(rest))
    host, port = _authority(rest[:authority_end], scheme)
    rest = rest[authority_end:]
    path, qmark, query = rest.partition("?")
    raw_segments = path.split("/")[1:] if path else [""]
    segments: list[str] = []
    for position, raw in enumerate(raw_segments):
        decoded = _decode(raw)
        if _FORBIDDEN_DECODED & set(decoded):
            raise _UnsafeURIError(f"an encoded '/', '\\' or '%' in the path segment {raw!r}")
        if any(not char.isprintable() for char in decoded):
            raise _UnsafeURIError(f"a control character in the path segment {raw!r}")
        # ";" starts path parameters for some servers ("..;x" is ".." to them); some
        # trim spaces or trailing dots ("..." or ".. " becomes ".." or "").
        name = decoded.split(";", 1)[0].strip()
        if name and set(name) == {"."}:
            raise _UnsafeURIError(f"the dot segment {raw!r}")
        if raw == "" and position != len(raw_segments) - 1:
            raise _UnsafeURIError("an empty path segment ('//')")
        segments.append(_normalise(raw))
    return scheme, host, port, tuple(segments), (query if qmark else None)


def status_uri_problem(uri: str) -> str | None:
    """Why ``uri`` is refused as a status-list URI whatever the prefixes, or None if it is not.

    The reasons are listed in the module docstring; each makes the URI mean
    different resources to different readers, so none is ever fetched.
    """
    try:
        _parse(uri)
    except _UnsafeURIError as exc:
        return f"the status URI has {exc}"
    return None


def uri_under_prefix(uri: str, prefix: str) -> bool:
    """True when ``uri`` is acceptable and lies under the registered ``prefix``.

    Scheme, host and port must be equal; the prefix's path must be a whole-segment
    prefix of the URI's (``/status`` admits ``/status`` and ``/status/x``, never
    ``/statusX``; ``/status/`` admits ``/status/x``). A prefix with a query, or one
    ``status_uri_problem`` would refuse, admits nothing.
    """
    try:
        scheme, host, port, segments, _ = _parse(uri)
        p_scheme, p_host, p_port, p_segments, p_query = _parse(prefix)
    except _UnsafeURIError:
        return False
    if p_query is not None or (scheme, host, port) != (p_scheme, p_host, p_port):
        return False
    if p_segments[-1] == "":
        # "/status/" admits what lies beneath it, not "/status" itself.
        p_segments = p_segments[:-1]
        if len(segments) <= len(p_segments):
            return False
    return segments[:len(p_segments)] == p_segments
