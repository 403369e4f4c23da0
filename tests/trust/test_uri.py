"""Status-list URIs against registered prefixes: by parsed components, never as strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from trust import status_uri_problem, uri_under_prefix

PREFIX = "https://gw.example.sh.cn/status/"
BASE = "https://gw.example.sh.cn"

# Each escapes the prefix for a client or server that removes dot segments, decodes
# twice, splits on a backslash or a path parameter, or reads the authority differently.
HOSTILE = [
    f"{PREFIX}../admin",
    f"{PREFIX}..",
    f"{PREFIX}./../admin",
    f"{PREFIX}lic/../../admin",
    f"{PREFIX}%2e%2e/admin",
    f"{PREFIX}%2E%2E/admin",
    f"{PREFIX}%2e%2E/admin",
    f"{PREFIX}.%2e/admin",
    f"{PREFIX}%2e./admin",
    f"{PREFIX}.%2E/admin",
    f"{PREFIX}%2e/admin",
    f"{PREFIX}./admin",
    f"{PREFIX}lic/..",
    f"{PREFIX}lic/%2e%2e",
    f"{PREFIX}..;/admin",
    f"{PREFIX}..;jsessionid=1/admin",
    f"{PREFIX}.../admin",
    f"{PREFIX}%2e%2e%2fadmin",
    f"{PREFIX}..%2fadmin",
    f"{PREFIX}..%2Fadmin",
    f"{PREFIX}..%5cadmin",
    f"{PREFIX}..%5Cadmin",
    f"{PREFIX}%252e%252e/admin",
    f"{PREFIX}%25252e/admin",
    f"{PREFIX}%c0%ae%c0%ae/admin",
    f"{PREFIX}%ef%bc%8e%ef%bc%8e/admin",
    f"{PREFIX}%ef%bc%8e%ef%bc%8e%ef%bc%8fadmin",
    f"{PREFIX}..\\admin",
    f"{BASE}/status\\..\\admin",
    f"{PREFIX}%00/admin",
    f"{PREFIX}lic%0a",
    f"{PREFIX} lic",
    f"{PREFIX}lic\t",
    f"{PREFIX}líc",
    f"{PREFIX}/admin",
    f"{PREFIX}lic//x",
    f"{PREFIX}lic#frag",
    f"{PREFIX}%2",
    f"{PREFIX}%zz",
    "https://user@gw.example.sh.cn/status/lic",
    "https://gw.example.sh.cn@evil.example/status/lic",
    "https://gw.example.sh.cn:443@evil.example/status/lic",
    "https://gw.example.sh.cn%2f@evil.example/status/lic",
    "https://gw.example.sh.cn%2eevil.example/status/lic",
    "https://gw.example.sh.cn:+443/status/lic",
    "https://gw.example.sh.cn:0/status/lic",
    "https://gw.example.sh.cn:99999/status/lic",
    "https://gw.example.sh.cn:443:80/status/lic",
    "https:/gw.example.sh.cn/status/lic",
    "https:gw.example.sh.cn/status/lic",
    "//gw.example.sh.cn/status/lic",
    "/status/lic",
    "ftp://gw.example.sh.cn/status/lic",
    "file:///status/lic",
    "javascript://gw.example.sh.cn/status/lic",
    "https://[::1/status/lic",
    "",
]

# Well formed, but not under the prefix: another scheme, host, port or path.
OUTSIDE = [
    "http://gw.example.sh.cn/status/lic",
    "https://gw.example.sh.cn:8443/status/lic",
    "https://evil.example/status/lic",
    "https://gw.example.sh.cn.evil.example/status/lic",
    "https://gw.example.sh.cn./status/lic",
    f"{BASE}/statusX/lic",
    f"{BASE}/status",
    f"{BASE}/STATUS/lic",
    f"{BASE}/admin",
    f"{BASE}/",
    BASE,
]

INSIDE = [
    f"{PREFIX}lic-2026",
    f"{PREFIX}lic-2026?page=2",
    f"{PREFIX}a/b/c",
    f"{PREFIX}",
    f"{PREFIX}lic.v2",
    f"{PREFIX}.well-known",
    f"{PREFIX}..x",
    f"{PREFIX}%7Elic",
    f"{PREFIX}%e4%b8%ad",
    "HTTPS://GW.EXAMPLE.SH.CN/status/lic",
    "https://gw.example.sh.cn:443/status/lic",
    "https://gw.example.sh.cn:/status/lic",
    "https://gw.example.sh.cn/%73tatus/lic",
    "https://gw.example.sh.cn/st%61tus/lic",
]


class TestStatusUriProblem:
    """A URI that could be read two ways is refused whatever the prefixes."""

    @pytest.mark.parametrize("uri", HOSTILE)
    def test_hostile_form_is_refused(self, uri: str) -> None:
        """Each hostile form has a problem and lies under no prefix."""
        assert status_uri_problem(uri) is not None
        assert not uri_under_prefix(uri, PREFIX)
        assert not uri_under_prefix(uri, BASE)

    @pytest.mark.parametrize("uri", [*INSIDE, *OUTSIDE])
    def test_plain_uri_has_no_problem(self, uri: str) -> None:
        """A well-formed http(s) URI without dot segments has none."""
        assert status_uri_problem(uri) is None

    @pytest.mark.parametrize(("uri", "words"), [
        (f"{PREFIX}%2E%2e/admin", "dot segment"),
        (f"{PREFIX}..%2fadmin", "encoded '/', '\\' or '%'"),
        (f"{BASE}/status\\x", "'\\\\'"),
        ("https://u@gw.example.sh.cn/status/x", "userinfo"),
        (f"{PREFIX}x//y", "empty path segment"),
    ])
    def test_reason_names_the_problem(self, uri: str, words: str) -> None:
        """The reason says what was found, for the verdict's detail."""
        problem = status_uri_problem(uri)
        assert problem is not None
        assert words in problem


class TestUriUnderPrefix:
    """Scheme, host and port equal; the path by whole segments."""

    @pytest.mark.parametrize("uri", INSIDE)
    def test_inside(self, uri: str) -> None:
        """A URI beneath the prefix is admitted, in any equivalent spelling."""
        assert uri_under_prefix(uri, PREFIX)

    @pytest.mark.parametrize("uri", OUTSIDE)
    def test_outside(self, uri: str) -> None:
        """Another scheme, host, port or path is not."""
        assert not uri_under_prefix(uri, PREFIX)

    def test_prefix_ends_at_a_segment_boundary(self) -> None:
        """``/status`` admits itself and what lies beneath it, never ``/statusX``."""
        prefix = f"{BASE}/status"
        assert uri_under_prefix(f"{BASE}/status", prefix)
        assert uri_under_prefix(f"{BASE}/status/lic", prefix)
        assert uri_under_prefix(f"{BASE}/status?x=1", prefix)
        assert not uri_under_prefix(f"{BASE}/statusX", prefix)
        assert not uri_under_prefix(f"{BASE}/status-old/lic", prefix)
        assert not uri_under_prefix(f"{BASE}/stat", prefix)

    def test_port_is_compared_as_a_number(self) -> None:
        """``http://gw:8`` is a string prefix of ``http://gw:8080``, not a port prefix."""
        assert not uri_under_prefix("http://127.0.0.1:8080/status/x", "http://127.0.0.1:8")
        assert uri_under_prefix("http://127.0.0.1:8/status/x", "http://127.0.0.1:8")
        assert uri_under_prefix("http://gw.example:80/x", "http://gw.example/")
        assert not uri_under_prefix("http://[::1]:8080/x", "http://[::1]:80/")
        assert uri_under_prefix("http://[::1]:8080/x", "http://[::1]:8080/")

    def test_host_only_prefix_admits_only_that_host(self) -> None:
        """A prefix without a path admits its own host, not one that starts like it."""
        assert uri_under_prefix(f"{BASE}/anything", BASE)
        assert not uri_under_prefix("https://gw.example.sh.cn.evil.example/x", BASE)

    @pytest.mark.parametrize("prefix", [
        f"{BASE}/status/?x=1", f"{BASE}/status/#x", f"{BASE}/a/../status/",
        "https://u@gw.example.sh.cn/status/", "gw.example.sh.cn/status/", "",
    ])
    def test_unusable_prefix_admits_nothing(self, prefix: str) -> None:
        """A prefix with a query, fragment, dot segment or userinfo matches no URI."""
        assert not uri_under_prefix(f"{PREFIX}lic", prefix)


_PIECES = st.sampled_from(["lic", "a", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%25",
                           ";", "~", "%7e", "?", "#", "@", ":", "\\", "%", "x.y"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=8))
def test_what_is_admitted_stays_under_the_prefix_when_fetched(pieces: list[str]) -> None:
    """Whatever is admitted, the HTTP client (yarl) still requests it under the prefix."""
    uri = PREFIX + "".join(pieces)
    if not uri_under_prefix(uri, PREFIX):
        return
    fetched = URL(uri)
    assert ("https", "gw.example.sh.cn", 443) == (fetched.scheme, fetched.host, fetched.port)
    assert fetched.raw_path.startswith("/status/")
    assert ".." not in fetched.path.split("/")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.text(max_size=60))
def test_any_text_is_judged_without_raising(uri: str, prefix: str) -> None:
    """Any string is judged: a reason or None, True or False, never an exception."""
    problem = status_uri_problem(uri)
    assert problem is None or isinstance(problem, str)
    assert uri_under_prefix(uri, prefix) in (True, False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=6), min_size=1, max_size=12))
def test_a_partner_remembers_the_answers_it_would_compute(paths: list[list[str]]) -> None:
    """``Partner.status_uri_allowed`` remembers its answers per URI: asked twice, in any
    order, it answers what its prefixes give when every URI is judged afresh."""
    from trust import IdentifierPolicy, Partner, PartnerStatus

    prefixes = (PREFIX, f"{BASE}/lists", "https://other.example.cn/s/")
    partner = Partner(region_code="310000", name="上海", groups=frozenset(),
                      status=PartnerStatus.ACTIVE, licence_types=None, matters=None,
                      identifier_policy=IdentifierPolicy.STRICT, status_max_age_s=3600,
                      status_uri_prefixes=prefixes, query_endpoint=None, anchors=())
    uris = [base + "".join(pieces) for pieces in paths
            for base in (PREFIX, f"{BASE}/lists", f"{BASE}/other/")]
    for uri in [*uris, *reversed(uris)]:
        assert partner.status_uri_allowed(uri) is any(uri_under_prefix(uri, p)
                                                      for p in prefixes)
