
"""Trust-list entries, the federation's trust list, JWKS and request tokens."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import jwt
import pytest

from mocks import Alg, Federation, MockRegion

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


class TestEntry:
    """A region's entry follows spec/trust-list.md."""

    def test_shape(self, region: MockRegion) -> None:
        """The entry carries the agreement defaults and the status prefix under base_url."""
        entry = region.trust_list_entry("http://127.0.0.1:9999/")
        assert {
            "region_code": "310000",
            "name": "上海市",
            "groups": ["yrd", "g60"],
            "status": "active",
            "recognised_licence_types": ["*"],
            "recognised_matters": ["*"],
            "identifier_check": "strict",
            "status_max_age_s": 86400,
            "endpoints": {"status_uri_prefixes": ["http://127.0.0.1:9999/status/"], "query": None},
        } == {k: v for k, v in entry.items() if k != "anchors"}

    def test_anchors(self, region: MockRegion) -> None:
        """Root, licence, status and request anchors, active, with RFC 3339 windows."""
        anchors = {a["kid"]: a for a in region.trust_list_entry()["anchors"]}
        assert {
            "310000-root-2026a": "root-ca",
            "310000-lic-2026a": "licence-signing",
            "310000-status-2026a": "status-signing",
            "310000-req-2026a": "request-signing",
        } == {kid: a["use"] for kid, a in anchors.items()}
        lic = anchors["310000-lic-2026a"]
        assert ("2026-01-01T00:00:00Z", "2031-12-31T23:59:59Z", "active", None, None) == (
            lic["valid_from"],
            lic["valid_until"],
            lic["status"],
            lic["revoked_at"],
            lic["revocation_reason"],
        )
        assert ("ES256", "310000-lic-2026a", "EC") == (
            lic["jwk"]["alg"],
            lic["jwk"]["kid"],
            lic["jwk"]["kty"],
        )
        assert "x5c" in anchors["310000-root-2026a"]

    @pytest.mark.parametrize("alg", ["EdDSA", "ES384", "RS256"])
    def test_no_private_members(self, region: MockRegion, alg: Alg) -> None:
        """No anchor or JWKS key leaks private key members."""
        region.add_signing_key(alg)
        jwks = [a["jwk"] for a in region.trust_list_entry()["anchors"] if "jwk" in a]
        jwks += region.jwks()["keys"]
        assert [] == [k["kid"] for k in jwks if PRIVATE_MEMBERS & set(k)]

    def test_revoked_anchor(self, region: MockRegion) -> None:
        """``set_anchor_status`` is reflected with revocation time and reason."""
        at = datetime(2026, 6, 1, tzinfo=UTC)
        region.set_anchor_status(region.licence_kid, "revoked", revoked_at=at, reason="superseded")
        anchor = next(
            a for a in region.trust_list_entry()["anchors"] if a["kid"] == region.licence_kid
        )
        assert ("revoked", "2026-06-01T00:00:00Z", "superseded") == (
            anchor["status"],
            anchor["revoked_at"],
            anchor["revocation_reason"],
        )

    def test_licence_status_uri_is_under_prefix(self, region: MockRegion) -> None:
        """Issued licences point into the registered status prefix."""
        prefix = region.trust_list_entry()["endpoints"]["status_uri_prefixes"][0]
        uri = region.issue().claims["status"]["status_list"]["uri"]
        assert uri.startswith(prefix)


class TestFederation:
    """The standard federation and its trust list."""

    def test_standard_partners(self, federation: Federation) -> None:
        """The standard set names the delta, corridor and far partners with their groups."""
        assert {
            "310000": ("上海市", ("yrd", "g60")),
            "320500": ("苏州市", ("yrd", "g60")),
            "330100": ("杭州市", ("yrd", "g60")),
            "340100": ("合肥市", ("yrd", "g60")),
            "320100": ("南京市", ("yrd",)),
            "520500": ("毕节市", ("kstb",)),
            "220600": ("白山市", ("kstb",)),
            "652929": ("柯坪县", ("kstb",)),
        } == {r.region_code: (r.name, r.groups) for r in federation}

    def test_trust_list_document(self, federation: Federation) -> None:
        """The document has version, times, issuer and one partner per region."""
        document = federation.trust_list(
            version=12,
            issued_at=datetime(2026, 11, 26, 8, tzinfo=UTC),
            next_update=datetime(2026, 12, 3, 8, tzinfo=UTC),
        )
        assert (12, "2026-11-26T08:00:00Z", "2026-12-03T08:00:00Z", "330500") == (
            document["version"],
            document["issued_at"],
            document["next_update"],
            document["issuer"],
        )
        assert list(federation.codes) == [p["region_code"] for p in document["partners"]]

    def test_unique_kids(self, federation: Federation) -> None:
        """Key ids are unique across the whole federation."""
        kids = [a["kid"] for r in federation for a in r.trust_list_entry()["anchors"]]
        assert len(kids) == len(set(kids))

    def test_subset(self) -> None:
        """``codes`` picks a subset and unknown codes are refused."""
        assert ("310000", "652929") == Federation.standard(codes=["652929", "310000"]).codes
        with pytest.raises(ValueError, match="999999"):
            Federation.standard(codes=["999999"])


class TestRequestToken:
    """Request tokens bind a partner's request to Huzhou's API."""

    def test_claims(self, region: MockRegion) -> None:
        """The token is signed by the request key and binds method, path and body."""
        body = b'{"identifier": "x"}'
        token = region.request_token(
            body=body, path="/v1/partner/licences/query", iat=1_790_000_000, jti="j-1"
        )
        key = jwt.PyJWK(region.public_jwk(region.request_kid))
        claims = jwt.decode(
            token, key=key, algorithms=["ES256"], audience="330500", options={"verify_exp": False}
        )
        assert {
            "iss": "310000",
            "aud": "330500",
            "iat": 1_790_000_000,
            "exp": 1_790_000_120,
            "jti": "j-1",
            "htm": "POST",
            "htu": "/v1/partner/licences/query",
            "body_sha256": hashlib.sha256(body).hexdigest(),
        } == claims
        header = jwt.get_unverified_header(token)
        assert ("ecert-request+jwt", region.request_kid) == (header["typ"], header["kid"])

    def test_fresh_jti(self, region: MockRegion) -> None:
        """Each token has its own jti unless one is given."""
        tokens = [region.request_token(body=b"", path="/") for _ in range(2)]
        jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
        assert 2 == len(jtis)
