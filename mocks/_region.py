"""One mock partner region: its keys, CA, licences, status list and trust-list entry.

Everything a real partner gateway would publish or sign is made here, in
memory; the HTTP face is in ``_server``. Tokens are built field by field as
spec/ecert-profile.md says, and every one of them can be bent for negative
tests (``*_override`` arguments, :meth:`MockRegion.sign`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Final, Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mocks._catalogue import (
    BUSINESS_LICENCE,
    CONSTRUCTION_WORKER,
    LICENCE_TYPES,
    SHIP_COMBINED,
    SHIP_COMPONENT_TYPES,
    HolderKind,
)
from mocks._jws import (
    SM2_ALG,
    Alg,
    SigningKey,
    b64url_encode,
    check_key_fits,
    public_jwk,
    sign_compact,
)
from mocks._keys import KeySource
from mocks._people import (
    CheckChar,
    identifier_body,
    lenient_check_char,
    licence_identifier,
    make_resident_id,
    make_uscc,
    organisation_name,
    person_name,
    strict_check_char,
    uscc_for,
)
from mocks._pki import KeyUsageName, der_b64, make_lookalike_ca, make_root, make_signer
from mocks._queries import (
    QueryRefused,
    check_huzhou_token,
    find_licences,
    huzhou_key,
    parse_query,
)
from mocks._sm2 import Sm2Key
from mocks._status import LicenceState, StatusList

__all__ = [
    "DELETE",
    "KEYS_VALID_FROM",
    "IssuedComponent",
    "KEYS_VALID_UNTIL",
    "ROOT_VALID_UNTIL",
    "AnchorStatus",
    "AnchorUse",
    "IssuedLicence",
    "MockRegion",
    "RevocationReason",
    "State",
    "rfc3339",
]

AnchorUse: TypeAlias = Literal["root-ca", "licence-signing", "request-signing", "status-signing"]
AnchorStatus: TypeAlias = Literal["active", "suspended", "revoked"]
RevocationReason: TypeAlias = Literal["key-compromise", "superseded", "cessation"]
State: TypeAlias = Literal["valid", "revoked", "suspended"]


class _Delete(Enum):
    DELETE = "DELETE"


DELETE: Final = _Delete.DELETE
"""Value for an ``*_override`` mapping: remove this member instead of setting it."""

KEYS_VALID_FROM: Final = datetime(2026, 1, 1, tzinfo=UTC)
"""Default start of every key's and certificate's window (the ``2026a`` generation)."""
KEYS_VALID_UNTIL: Final = datetime(2031, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Default end of the signing keys' and the signer certificate's window."""
ROOT_VALID_UNTIL: Final = datetime(2040, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Default end of the root CA's window."""

_SIGNING: Final[tuple[KeyUsageName, ...]] = ("digital_signature",)
_CHINA: Final = timezone(timedelta(hours=8), "CST")
_GENERATION: Final = "2026"
_PROVINCE_ABBR: Final = {
    "11": "京",
    "12": "津",
    "22": "吉",
    "31": "沪",
    "32": "苏",
    "33": "浙",
    "34": "皖",
    "36": "赣",
    "37": "鲁",
    "52": "黔",
    "65": "新",
}
_USE_TAG: Final[Mapping[AnchorUse, str]] = {
    "licence-signing": "lic",
    "status-signing": "status",
    "request-signing": "req",
    "root-ca": "root",
}
_DEMO_TYPES: Final = (
    CONSTRUCTION_WORKER,
    BUSINESS_LICENCE,
    "11100000000019713D071",
    "11100000000013338W011",
    "11100000MB03271699001",
)
_STATES: Final[Mapping[State, LicenceState]] = {
    "valid": LicenceState.VALID,
    "revoked": LicenceState.INVALID,
    "suspended": LicenceState.SUSPENDED,
}


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime as an RFC 3339 UTC string with a ``Z``, to the second."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no place in a trust list")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(target: dict[str, Any], override: Mapping[str, Any] | None) -> None:
    for name, value in (override or {}).items():
        if value is DELETE:
            target.pop(name, None)
        else:
            target[name] = value


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


@dataclass(eq=False, slots=True)
class _Key:
    """A private key of the region and what the trust list says about it."""

    kid: str
    alg: Alg
    use: AnchorUse
    private: SigningKey
    valid_from: datetime
    valid_until: datetime
    publish: bool = True
    chain: tuple[x509.Certificate, ...] = ()
    status: AnchorStatus = "active"
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None
    sm2_id: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedComponent:
    """One component certificate inside a combined certificate a mock region issued."""

    identifier: str
    type_code: str
    status_idx: int
    claims: dict[str, Any] = field(repr=False)
    """The component object as signed (inside ``lic.components``)."""


@dataclass(frozen=True, slots=True)
class IssuedLicence:
    """An ``ecert+jwt`` made by a mock region, with the parts tests look at."""

    token: str
    """The compact JWS."""
    identifier: str
    """The 证照标识 (the ``jti`` claim)."""
    status_idx: int | None
    """The licence's entry in its region's status list, or None without ``status``."""
    header: dict[str, Any] = field(repr=False)
    """The protected header as signed."""
    claims: dict[str, Any] = field(repr=False)
    """The payload as signed."""
    components: tuple[IssuedComponent, ...] = ()
    """A combined certificate's components (``issue_combined``), in order."""


class MockRegion:
    """A partner region with its own root CA, signing keys, licences and status list.

    Keys are made at construction: a P-256 root CA and a licence-signing
    certificate under it, the licence and status-list keys ``{code}-lic-2026a``
    and ``{code}-status-2026a`` of ``licence_alg`` (ES256, or SM2SM3 for a
    partner that signs with SM2), and the ES256 request key ``{code}-req-2026a``.
    With ``seed`` every EC, Ed25519 and SM2 key and all demo data are the same on
    every run.
    """

    def __init__(
        self,
        region_code: str,
        name: str,
        groups: Sequence[str],
        *,
        seed: int | None = None,
        base_url: str | None = None,
        id_prefixes: Sequence[str] | None = None,
        keys_valid_from: datetime = KEYS_VALID_FROM,
        keys_valid_until: datetime = KEYS_VALID_UNTIL,
        root_valid_until: datetime = ROOT_VALID_UNTIL,
        status_list_name: str = f"lic-{_GENERATION}",
        identifier_check: Literal["strict", "lenient"] = "strict",
        status_max_age_s: int = 86400,
        recognised_licence_types: Sequence[str] = ("*",),
        recognised_matters: Sequence[str] = ("*",),
        query_url: str | None = None,
        licence_alg: Alg = "ES256",
        combined_certificates: bool = False,
    ) -> None:
        """Make the region's keys and certificates; ``base_url`` may be set later."""
        if len(region_code) != 6 or not region_code.isdigit():
            raise ValueError(f"{region_code!r} is not a 6-digit region code")
        self.region_code: Final = region_code
        self.name: Final = name
        self.groups: tuple[str, ...] = tuple(groups)
        self.short_name: Final = name[:-1] if name[-1] in "市县区" else name
        self.id_prefixes: tuple[str, ...] = tuple(id_prefixes or self._default_prefixes())
        self.keys_valid_from = keys_valid_from
        self.keys_valid_until = keys_valid_until
        self.status_list_name = status_list_name
        self.partner_status: Literal["active", "suspended"] = "active"
        self.identifier_check = identifier_check
        self.status_max_age_s = status_max_age_s
        self.recognised_licence_types: tuple[str, ...] = tuple(recognised_licence_types)
        self.recognised_matters: tuple[str, ...] = tuple(recognised_matters)
        self.query_url = query_url
        self.status_ttl_s: int | None = 300
        """``ttl`` of the status list token the HTTP server hands out."""
        self.status_lifetime_s: int | None = 86400
        """``exp - iat`` of the status list token the HTTP server hands out."""
        self.status_available = True
        """When False the HTTP server answers 503 for the status list (outage drills)."""
        self.combined_certificates = combined_certificates
        """Whether the region issues inland-ship combined certificates (多证合一): its HTTP
        server then serves demo ones (``demo_combined``). ``issue_combined`` works anyway."""
        self._demo_combined: dict[int, IssuedLicence] = {}
        self.query_available = True
        """When False the HTTP server answers 503 to Huzhou's queries (outage drills)."""
        self.query_delay_s = 0.0
        """Seconds the HTTP server waits before answering a query from Huzhou (a slow partner)."""
        self.queries_seen = 0
        """Queries from Huzhou the HTTP server received (authenticated or not)."""
        self._huzhou_keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._huzhou_jtis: set[str] = set()
        self._issued: list[tuple[dict[str, Any], str]] = []

        self._source = KeySource(seed, region_code)
        self._demo: dict[int, IssuedLicence] = {}
        self._base_url = ""
        self.base_url = base_url or f"https://gw-{region_code}.mock.invalid"
        self._status = StatusList()
        """Its entries (``status_list_size`` of them encoded at least)."""
        self._serials: set[str] = set()
        self._keys: dict[str, _Key] = {}

        root_kid = self._kid("root-ca")
        # A region that signs with SM2 has an SM2 PKI: its root, CAs and signer certificates.
        self.root_alg: Final[Alg] = SM2_ALG if licence_alg == SM2_ALG else "ES256"
        """The algorithm of the region's root CA key, and the default of its certificates."""
        root_key = self._source.certificate_key(self.root_alg, root_kid)
        self._root = make_root(
            root_key,
            organisation=name,
            common_name=f"{name}电子证照根CA {_GENERATION}",
            not_before=keys_valid_from,
            not_after=root_valid_until,
            serial_number=self._source.serial_number(root_kid),
        )
        self._root_key = root_key
        self.root_kid: Final = root_kid
        self._keys[root_kid] = _Key(
            root_kid,
            self.root_alg,
            "root-ca",
            root_key,
            keys_valid_from,
            root_valid_until,
            chain=(self._root,),
        )
        self.licence_alg: Final = licence_alg
        """The algorithm of the default licence and status-list keys."""
        self.licence_kid: Final = self.add_signing_key(licence_alg)
        self.status_kid: Final = self.add_signing_key(licence_alg, use="status-signing")
        self.request_kid: Final = self.add_signing_key("ES256", use="request-signing")
        self.x509_kid: Final = self.add_certificate_key()

    def __repr__(self) -> str:
        return f"MockRegion({self.region_code!r}, {self.name!r}, base_url={self.base_url!r})"

    def _default_prefixes(self) -> list[str]:
        code = self.region_code
        if code.endswith("0000"):  # a municipality: its first district
            return [code[:2] + "0101"]
        if code.endswith("00"):  # a prefecture: its first urban district
            return [code[:4] + "02"]
        return [code]

    def _kid(self, use: AnchorUse) -> str:
        taken = sum(1 for key in self._keys.values() if key.use == use and not key.chain)
        if use == "root-ca":
            taken = 0
        return f"{self.region_code}-{_USE_TAG[use]}-{_GENERATION}{chr(ord('a') + taken)}"

    # -- keys ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the region's HTTP server is (or will be) reachable, without a trailing slash."""
        return self._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._base_url = value.rstrip("/")
        self._demo.clear()  # demo licences carry the status URI
        self._demo_combined.clear()

    @property
    def status_uri(self) -> str:
        """The URI of the region's status list (the ``sub`` of its token)."""
        return f"{self.base_url}/status/{self.status_list_name}"

    @property
    def status_list_size(self) -> int:
        """Entries the status list always encodes (herd privacy; 16,384 unless set). Past
        it, the list grows with every licence issued: set low, a list a gateway holds soon
        lacks the entries of licences issued after it was fetched."""
        return self._status.size

    @status_list_size.setter
    def status_list_size(self, size: int) -> None:
        if size < 0:
            raise ValueError("a status list size is not negative")
        self._status.size = size

    @property
    def root_certificate(self) -> x509.Certificate:
        """The region's root CA certificate (its ``root-ca`` anchor)."""
        return self._root

    @property
    def signer_certificate(self) -> x509.Certificate:
        """The default licence-signing certificate (the key of :attr:`x509_kid`)."""
        return self._keys[self.x509_kid].chain[0]

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id of the region, root and unpublished keys included."""
        return tuple(self._keys)

    def _key(self, kid: str) -> _Key:
        try:
            return self._keys[kid]
        except KeyError:
            raise ValueError(f"region {self.region_code} has no key {kid!r}") from None

    def private_key(self, kid: str) -> SigningKey:
        """Return the private key ``kid`` (for tests that sign something unusual)."""
        return self._key(kid).private

    def alg_of(self, kid: str) -> Alg:
        """Return the JWS algorithm key ``kid`` signs with."""
        return self._key(kid).alg

    def certificate_chain(self, kid: str) -> tuple[x509.Certificate, ...]:
        """Return the ``x5c`` chain of a certificate-bound key (signer first)."""
        return self._key(kid).chain

    def add_signing_key(
        self,
        alg: Alg,
        *,
        kid: str | None = None,
        use: AnchorUse = "licence-signing",
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
        rsa_bits: int = 2048,
        publish: bool = True,
        sm2_id: str | None = None,
    ) -> str:
        """Make a new key and return its kid (by default ``{code}-lic-2026b``, ``c``, ...).

        ``rsa_bits=1024`` makes the weak key of the crypto-constraint tests;
        ``publish=False`` keeps the key out of the trust list and JWKS; ``sm2_id``
        makes an SM2SM3 key sign under that signer ID, and its anchor say so.
        """
        if use == "root-ca":
            raise ValueError("the root is made at construction")
        kid = kid or self._kid(use)
        if kid in self._keys:
            raise ValueError(f"key {kid!r} exists")
        private = self._source.private_key(alg, kid, rsa_bits=rsa_bits)
        check_key_fits(private, alg)
        if sm2_id is not None:
            if not isinstance(private, Sm2Key):
                raise ValueError("sm2_id is for SM2SM3 keys")
            private = private.with_signer_id(sm2_id.encode())
        self._keys[kid] = _Key(
            kid,
            alg,
            use,
            private,
            valid_from or self.keys_valid_from,
            valid_until or self.keys_valid_until,
            publish=publish,
            sm2_id=sm2_id,
        )
        return kid

    def add_certificate_key(
        self,
        *,
        alg: Alg | None = None,
        kid: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        ca: bool = False,
        key_usage: Collection[KeyUsageName] | None = _SIGNING,
        include_aki: bool = True,
        unknown_critical: bool = False,
        via_intermediate: bool = False,
        rogue_root: bool = False,
        lookalike_cas: int = 0,
        distinct_names: bool = False,
        distinct_keys: bool = False,
    ) -> str:
        """Make a licence-signing key bound to a certificate; return its (internal) kid.

        Defaults follow the profile; ``alg`` is the root's (SM2SM3 in an SM2
        region). ``ca``, ``key_usage``, ``include_aki`` and ``unknown_critical``
        bend the certificate;
        ``via_intermediate`` puts a CA between root and signer (breaking the
        root's pathlen 0); ``rogue_root`` issues it from a look-alike root with
        the same name that is in no trust list.

        ``lookalike_cas`` is the x5c path-building attack: the signer is issued
        by the first of that many attacker-made CA certificates that carry the
        root's key identifier, and they follow it in the chain. By default they
        all bear the root's name (self-issued) and share one key, so that each
        verifies as the issuer of every other; ``distinct_names`` names them
        apart, each issued by the next and the last by the root's name, and
        ``distinct_keys`` gives each its own key.
        """
        if lookalike_cas and (via_intermediate or rogue_root):
            raise ValueError("lookalike_cas replaces via_intermediate and rogue_root")
        count = sum(1 for key in self._keys.values() if key.chain and key.use != "root-ca")
        kid = kid or f"{self.region_code}-lic-x509-{_GENERATION}{chr(ord('a') + count)}"
        if kid in self._keys:
            raise ValueError(f"key {kid!r} exists")
        start = not_before or self.keys_valid_from
        end = not_after or self.keys_valid_until
        alg = alg or self.root_alg
        private = self._source.certificate_key(alg, kid)
        issuer_cert, issuer_key = self._root, self._root_key
        if rogue_root:
            issuer_key = self._source.certificate_key(self.root_alg, kid + "/rogue-root")
            issuer_cert = make_root(
                issuer_key,
                organisation=self.name,
                common_name=f"{self.name}电子证照根CA {_GENERATION}",
                not_before=start,
                not_after=end,
                serial_number=self._source.serial_number(kid + "/rogue-root"),
            )
        intermediates: tuple[x509.Certificate, ...] = ()
        if via_intermediate:
            inter_key = self._source.certificate_key(self.root_alg, kid + "/intermediate")
            inter = make_signer(
                inter_key.public_key(),
                issuer_certificate=issuer_cert,
                issuer_key=issuer_key,
                organisation=self.name,
                common_name=f"{self.name}电子证照中间CA",
                not_before=start,
                not_after=end,
                serial_number=self._source.serial_number(kid + "/intermediate"),
                ca=True,
                key_usage=("key_cert_sign", "crl_sign"),
            )
            intermediates = (inter,)
            issuer_cert, issuer_key = inter, inter_key
        if lookalike_cas:
            intermediates, issuer_key = self._lookalike_cas(
                kid, lookalike_cas, distinct_names=distinct_names, distinct_keys=distinct_keys,
                not_before=start, not_after=end)
            issuer_cert = intermediates[0]
        leaf = make_signer(
            private.public_key(),
            issuer_certificate=issuer_cert,
            issuer_key=issuer_key,
            organisation=self.name,
            common_name=f"{self.name}电子证照签发 {kid}",
            not_before=start,
            not_after=end,
            serial_number=self._source.serial_number(kid),
            ca=ca,
            key_usage=key_usage,
            include_aki=include_aki,
            unknown_critical=unknown_critical,
        )
        self._keys[kid] = _Key(
            kid,
            alg,
            "licence-signing",
            private,
            start,
            end,
            publish=False,
            chain=(leaf, *intermediates),
        )
        return kid

    def _lookalike_cas(self, kid: str, count: int, *, distinct_names: bool,
                       distinct_keys: bool, not_before: datetime,
                       not_after: datetime) -> tuple[tuple[x509.Certificate, ...], SigningKey]:
        """The attacker's CAs for ``lookalike_cas``, and the private key of the first."""
        shared = self._source.certificate_key(self.root_alg, f"{kid}/lookalike")
        keys = [self._source.certificate_key(self.root_alg, f"{kid}/lookalike-{i}")
                if distinct_keys
                else shared for i in range(count)]
        names = [self._root.subject] * count
        if distinct_names:
            names = [x509.Name([*self._root.subject,
                                x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, str(i))])
                     for i in range(count)]
        issuers = [*names[1:], self._root.subject] if distinct_names else names
        cas = tuple(
            make_lookalike_ca(
                keys[i].public_key(),
                root=self._root,
                # Each is signed by the key of the next (the last by the first's).
                issuer_key=keys[(i + 1) % count],
                subject=names[i],
                issuer=issuers[i],
                not_before=not_before,
                not_after=not_after,
                serial_number=self._source.serial_number(f"{kid}/lookalike-{i}"),
            )
            for i in range(count)
        )
        return cas, keys[0]

    def set_anchor_status(
        self,
        kid: str,
        status: AnchorStatus,
        *,
        revoked_at: datetime | None = None,
        reason: RevocationReason | None = None,
    ) -> None:
        """Change what the trust-list entry says about anchor ``kid``."""
        key = self._key(kid)
        key.status = status
        key.revoked_at = revoked_at if status == "revoked" else None
        key.reason = reason if status == "revoked" else None

    def public_jwk(self, kid: str) -> dict[str, Any]:
        """Return the public JWK of key ``kid`` with its ``kid`` and ``alg``."""
        key = self._key(kid)
        return {**public_jwk(key.private.public_key()), "kid": kid, "alg": key.alg}

    def jwks(self) -> dict[str, Any]:
        """Return the JWK Set of the region's published keys (roots and certificate keys aside)."""
        keys = [
            {**self.public_jwk(key.kid), "use": "sig"}
            for key in self._keys.values()
            if key.publish and not key.chain
        ]
        return {"keys": keys}

    # -- signing ---------------------------------------------------------------------------

    def sign(
        self,
        header: Mapping[str, Any] | bytes,
        payload: Mapping[str, Any] | bytes,
        *,
        kid: str | None = None,
    ) -> str:
        """Sign ``header`` and ``payload`` exactly as given with key ``kid``.

        Without ``kid`` the header's ``kid`` picks the key (unless the header is
        given as bytes), else the default licence-signing key. The key signs with
        its own algorithm whatever the header's ``alg`` says, so inconsistent
        tokens can be made on purpose.
        """
        chosen = kid or (None if isinstance(header, bytes) else header.get("kid"))
        key = self._key(chosen if isinstance(chosen, str) else self.licence_kid)
        return sign_compact(header, payload, key.private, key.alg)

    def _pick_licence_key(self, kid: str | None, alg: Alg | None, use_x5c: bool) -> _Key:
        if kid is not None:
            key = self._key(kid)
        else:
            candidates = [
                k
                for k in self._keys.values()
                if k.use == "licence-signing"
                and bool(k.chain) == use_x5c
                and (alg is None or k.alg == alg)
                and (use_x5c or k.publish)
            ]
            if candidates:
                key = candidates[0]
            elif alg is None:
                raise ValueError("no licence-signing key fits")
            elif use_x5c:
                key = self._key(self.add_certificate_key(alg=alg))
            else:
                key = self._key(self.add_signing_key(alg))
        if use_x5c and not key.chain:
            raise ValueError(f"key {key.kid!r} has no certificate for x5c")
        return key

    def _new_serial(self, year: int) -> str:
        while True:
            serial = f"{year}{self._source.rng.randrange(10**7):07d}"
            if serial not in self._serials:
                self._serials.add(serial)
                return serial

    def _holder(self, kind: HolderKind) -> tuple[str, str, str]:
        rng = self._source.rng
        if kind == "person":
            return person_name(rng), make_resident_id(self.id_prefixes, rng), "111"
        code = make_uscc("91", rng.choice(self.id_prefixes), f"{rng.randrange(10**8):08d}")
        return organisation_name(self.short_name, rng), code, "001"

    def issue(
        self,
        *,
        type_code: str = CONSTRUCTION_WORKER,
        type_name: str | None = None,
        holder: HolderKind | None = None,
        holder_name: str | None = None,
        iat: int | None = None,
        nbf: int | None = None,
        exp: int | Literal["auto"] | None = "auto",
        issue_date: date | None = None,
        valid_from: date | None = None,
        valid_until: date | Literal["auto"] | None = "auto",
        matters: Sequence[str] | None = None,
        fields: Mapping[str, Any] | None = None,
        with_status: bool = True,
        state: State = "valid",
        kid: str | None = None,
        alg: Alg | None = None,
        use_x5c: bool = False,
        check_char: CheckChar = "strict",
        serial: str | None = None,
        version: str = "001",
        lic_override: Mapping[str, Any] | None = None,
        claims_override: Mapping[str, Any] | None = None,
        header_override: Mapping[str, Any] | None = None,
    ) -> IssuedLicence:
        """Issue an ``ecert+jwt`` per spec/ecert-profile.md and return it with its parts.

        Defaults: signed now with ``{code}-lic-2026a``, a 建筑施工特种作业人员
        操作资格证书 held by a person, valid three years from today (Beijing
        time) with ``exp`` at the end of ``valid_until``, an entry in the status
        list. ``valid_until=None`` is 长期 (and, with ``exp="auto"``, no ``exp``).
        ``alg`` picks (or makes) a key of that algorithm; ``use_x5c`` signs with a
        certificate-bound key and puts its chain in the header. ``check_char``
        ``"lenient"`` gives the widely copied wrong variant (a serial is chosen
        where it differs from the correct one), ``"wrong"`` one neither accepts.
        Overrides are merged last (``DELETE`` removes a member).
        """
        key = self._pick_licence_key(kid, alg, use_x5c)
        iat = int(time.time()) if iat is None else iat
        issued = issue_date or datetime.fromtimestamp(iat, _CHINA).date()
        start = valid_from or issued
        end = _add_years(start, 3) - timedelta(days=1) if valid_until == "auto" else valid_until
        if exp == "auto":
            exp = (
                None
                if end is None
                else int(
                    datetime.combine(
                        end + timedelta(days=1), datetime.min.time(), _CHINA
                    ).timestamp()
                )
            )
        ltype = LICENCE_TYPES.get(type_code)
        kind: HolderKind = holder or (ltype.holder if ltype else "person")
        name, holder_code, holder_type = self._holder(kind)
        department = ltype.department if ltype else "人民政府"
        issuer_name = f"{self.name}{department}"
        issuer_code = uscc_for("11", self.region_code, issuer_name)

        if serial is None:
            serial = self._new_serial(issued.year)
            while check_char == "lenient":
                body = identifier_body(type_code, issuer_code, serial, version)
                if lenient_check_char(body) != strict_check_char(body):
                    break
                serial = self._new_serial(issued.year)
        elif check_char == "lenient":
            body = identifier_body(type_code, issuer_code, serial, version)
            if lenient_check_char(body) == strict_check_char(body):
                raise ValueError(f"for serial {serial} the lenient and correct checks agree")
        identifier = licence_identifier(type_code, issuer_code, serial, version, check=check_char)

        rng = self._source.rng
        number = (ltype.number if ltype else "{abbr}{digits}").format(
            abbr=_PROVINCE_ABBR.get(self.region_code[:2], ""),
            short=self.short_name,
            year=issued.year,
            seq=f"{rng.randrange(10**7):07d}",
            digits=f"{rng.randrange(10**12):012d}",
            holder_code=holder_code,
            region_code=self.region_code,
        )
        lic: dict[str, Any] = {
            "type_code": type_code,
            "type_name": type_name or (ltype.name if ltype else "（未编目证照）"),
            "number": number,
            "issuer_name": issuer_name,
            "issuer_code": issuer_code,
            "issue_date": issued.isoformat(),
            "holder_name": holder_name or name,
            "holder_code": holder_code,
            "holder_code_type": holder_type,
            "valid_from": start.isoformat(),
            "valid_until": None if end is None else end.isoformat(),
        }
        if matters is not None:
            lic["matters"] = list(matters)
        surface = dict(fields) if fields is not None else dict(ltype.fields if ltype else ())
        if surface:
            lic["fields"] = surface
        _merge(lic, lic_override)

        claims: dict[str, Any] = {"iss": self.region_code, "jti": identifier, "iat": iat}
        if nbf is not None:
            claims["nbf"] = nbf
        if exp is not None:
            claims["exp"] = exp
        claims["lic"] = lic
        status_idx: int | None = None
        if with_status:
            status_idx = self._status.allocate()
            self._status.set(status_idx, _STATES[state])
            claims["status"] = {"status_list": {"idx": status_idx, "uri": self.status_uri}}
        _merge(claims, claims_override)

        header: dict[str, Any] = {"alg": key.alg, "typ": "ecert+jwt"}
        if use_x5c:
            header["x5c"] = [der_b64(cert) for cert in key.chain]
        else:
            header["kid"] = key.kid
        _merge(header, header_override)

        token = sign_compact(header, claims, key.private, key.alg)
        self._issued.append((claims, token))  # answers Huzhou's queries (mocks._queries)
        jti = claims.get("jti")
        return IssuedLicence(
            token=token,
            identifier=jti if isinstance(jti, str) else identifier,
            status_idx=status_idx,
            header=header,
            claims=claims,
        )

    def issue_combined(
        self,
        *,
        types: Sequence[str] = SHIP_COMPONENT_TYPES,
        states: Mapping[str, State] | None = None,
        component_valid_until: Mapping[str, date | None] | None = None,
        component_override: Mapping[str, Mapping[str, Any]] | None = None,
        **issue_args: Any,
    ) -> IssuedLicence:
        """Issue an inland-ship combined certificate (多证合一, docs/combined-certificates.md).

        One component per code in ``types`` (default: the four ship certificates),
        each with its own identifier, number, issuer, validity and entry in the
        region's status list; ``states``, ``component_valid_until`` and
        ``component_override`` (``DELETE`` removes a member) bend one component by
        its type code. The document itself is issued as ``issue`` does (its
        keyword arguments pass through) with type ``SHIP_COMBINED``; its
        ``valid_until`` defaults to the latest component's.
        """
        iat = issue_args.get("iat")
        issued = datetime.fromtimestamp(int(time.time()) if iat is None else iat, _CHINA).date()
        default_end = _add_years(issued, 3) - timedelta(days=1)
        rng = self._source.rng
        components: list[dict[str, Any]] = []
        made: list[tuple[str, str, int]] = []
        for type_code in types:
            ltype = LICENCE_TYPES.get(type_code)
            issuer_name = f"{self.name}{ltype.department if ltype else '交通运输局'}"
            issuer_code = uscc_for("11", self.region_code, issuer_name)
            identifier = licence_identifier(type_code, issuer_code,
                                            self._new_serial(issued.year))
            end = (component_valid_until or {}).get(type_code, default_end)
            idx = self._status.allocate()
            self._status.set(idx, _STATES[(states or {}).get(type_code, "valid")])
            component: dict[str, Any] = {
                "identifier": identifier,
                "type_code": type_code,
                "type_name": ltype.name if ltype else "（未编目证照）",
                "number": (ltype.number if ltype else "{short}{seq}").format(
                    abbr=_PROVINCE_ABBR.get(self.region_code[:2], ""), short=self.short_name,
                    year=issued.year, seq=f"{rng.randrange(10**7):07d}",
                    digits=f"{rng.randrange(10**12):012d}", holder_code="",
                    region_code=self.region_code),
                "issuer_name": issuer_name,
                "issuer_code": issuer_code,
                "issue_date": issued.isoformat(),
                "valid_from": issued.isoformat(),
                "valid_until": None if end is None else end.isoformat(),
                "status": {"status_list": {"idx": idx, "uri": self.status_uri}},
            }
            _merge(component, (component_override or {}).get(type_code))
            components.append(component)
            made.append((identifier, type_code, idx))
        ends = [c.get("valid_until") for c in components]
        if "valid_until" not in issue_args:
            latest = None if None in ends else max(date.fromisoformat(str(e)) for e in ends)
            issue_args["valid_until"] = latest
            issue_args.setdefault("valid_from", issued)
        lic_override = {**issue_args.pop("lic_override", {}), "components": components}
        document = self.issue(type_code=issue_args.pop("type_code", SHIP_COMBINED),
                              holder=issue_args.pop("holder", "organisation"),
                              lic_override=lic_override, **issue_args)
        return IssuedLicence(
            token=document.token, identifier=document.identifier,
            status_idx=document.status_idx, header=document.header, claims=document.claims,
            components=tuple(IssuedComponent(identifier, type_code, idx, component)
                             for (identifier, type_code, idx), component
                             in zip(made, components, strict=True)))

    def demo_combined(self, n: int) -> IssuedLicence:
        """Return demo combined certificate number ``n`` (made on first use, then the same)."""
        if n < 0:
            raise ValueError("demo licences are numbered from 0")
        if n not in self._demo_combined:
            self._demo_combined[n] = self.issue_combined()
        return self._demo_combined[n]

    def demo_licence(self, n: int) -> IssuedLicence:
        """Return demo licence number ``n`` (made on first use, then the same one)."""
        if n < 0:
            raise ValueError("demo licences are numbered from 0")
        if n not in self._demo:
            self._demo[n] = self.issue(type_code=_DEMO_TYPES[n % len(_DEMO_TYPES)])
        return self._demo[n]

    # -- status ----------------------------------------------------------------------------

    def revoke(self, idx: int) -> None:
        """Mark entry ``idx`` invalid (1: revoked or cancelled)."""
        self._status.set(idx, LicenceState.INVALID)

    def suspend(self, idx: int) -> None:
        """Mark entry ``idx`` suspended (2)."""
        self._status.set(idx, LicenceState.SUSPENDED)

    def reinstate(self, idx: int) -> None:
        """Mark entry ``idx`` valid (0) again."""
        self._status.set(idx, LicenceState.VALID)

    def status_of(self, idx: int) -> int:
        """Return the status value of entry ``idx`` (0 valid, 1 invalid, 2 suspended)."""
        return int(self._status.get(idx))

    def status_list_token(
        self,
        *,
        iat: int | None = None,
        exp: int | None = None,
        ttl: int | None = None,
        bits: int = 2,
        kid: str | None = None,
        claims_override: Mapping[str, Any] | None = None,
    ) -> str:
        """Return the region's status list as a ``statuslist+jwt`` signed by its status key."""
        key = self._key(kid or self.status_kid)
        claims: dict[str, Any] = {
            "sub": self.status_uri,
            "iat": int(time.time()) if iat is None else iat,
        }
        if exp is not None:
            claims["exp"] = exp
        if ttl is not None:
            claims["ttl"] = ttl
        claims["status_list"] = {"bits": bits, "lst": b64url_encode(self._status.compressed(bits))}
        _merge(claims, claims_override)
        header = {"alg": key.alg, "typ": "statuslist+jwt", "kid": key.kid}
        return sign_compact(header, claims, key.private, key.alg)

    # -- requests to Huzhou ------------------------------------------------------------------

    def request_token(
        self,
        *,
        body: bytes,
        path: str,
        aud: str = "330500",
        method: str = "POST",
        iat: int | None = None,
        lifetime: int = 120,
        jti: str | None = None,
        kid: str | None = None,
        claims_override: Mapping[str, Any] | None = None,
    ) -> str:
        """Return an ``ecert-request+jwt`` binding ``method``, ``path`` and ``body``."""
        key = self._key(kid or self.request_kid)
        issued = int(time.time()) if iat is None else iat
        claims: dict[str, Any] = {
            "iss": self.region_code,
            "aud": aud,
            "iat": issued,
            "exp": issued + lifetime,
            "jti": jti or uuid.uuid4().hex,
            "htm": method,
            "htu": path,
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        _merge(claims, claims_override)
        header = {"alg": key.alg, "typ": "ecert-request+jwt", "kid": key.kid}
        return sign_compact(header, claims, key.private, key.alg)

    # -- queries from Huzhou ----------------------------------------------------------------

    def accept_huzhou_keys(self, jwks: Mapping[str, Any], *, kid_part: str = "-req-") -> None:
        """Accept Huzhou's request keys: the P-256 keys of its JWK Set whose ``kid``
        contains ``kid_part`` (Huzhou names its request keys ``330500-req-...``)."""
        self._huzhou_keys = {str(k["kid"]): huzhou_key(k) for k in jwks.get("keys", [])
                             if kid_part in str(k.get("kid", "")) and k.get("crv") == "P-256"}

    def answer_query(self, *, token: str, path: str, body: bytes,
                     now: int | None = None) -> tuple[int, dict[str, Any]]:
        """Answer a query from Huzhou: HTTP status and JSON body (a problem body when
        refused). Licences are those this region issued (``issue``)."""
        try:
            check_huzhou_token(token, keys=self._huzhou_keys, audience=self.region_code,
                               path=path, body=body,
                               now=int(time.time()) if now is None else now,
                               seen=self._huzhou_jtis)
            query = parse_query(body)
        except QueryRefused as refused:
            return refused.status, {"type": "about:blank", "title": "Refused",
                                    "status": refused.status, "detail": refused.detail,
                                    "cn_status": refused.cn_status}
        cn, licences = find_licences(query, self._issued, self.status_of)
        message = {0: "found", 10: "not found", 21: "revoked", 23: "suspended"}[cn]
        return 200, {"cn_status": cn, "message": message, "licences": licences}

    # -- trust list --------------------------------------------------------------------------

    def _anchor(self, key: _Key) -> dict[str, Any]:
        anchor: dict[str, Any] = {"kid": key.kid, "use": key.use}
        if key.use == "root-ca":
            anchor["x5c"] = [der_b64(cert) for cert in key.chain]
        else:
            anchor["jwk"] = self.public_jwk(key.kid)
        if key.sm2_id is not None:
            anchor["sm2_id"] = key.sm2_id
        anchor.update(
            valid_from=rfc3339(key.valid_from),
            valid_until=rfc3339(key.valid_until),
            status=key.status,
            revoked_at=None if key.revoked_at is None else rfc3339(key.revoked_at),
            revocation_reason=key.reason,
        )
        return anchor

    def trust_list_entry(self, base_url: str | None = None) -> dict[str, Any]:
        """Return this region's partner entry of the trust list (spec/trust-list.md).

        ``base_url`` defaults to the region's own; public keys only.
        """
        base = (base_url or self.base_url).rstrip("/")
        anchors = [
            self._anchor(key)
            for key in self._keys.values()
            if key.publish and (key.use == "root-ca" or not key.chain)
        ]
        return {
            "region_code": self.region_code,
            "name": self.name,
            "groups": list(self.groups),
            "status": self.partner_status,
            "recognised_licence_types": list(self.recognised_licence_types),
            "recognised_matters": list(self.recognised_matters),
            "identifier_check": self.identifier_check,
            "status_max_age_s": self.status_max_age_s,
            "endpoints": {"status_uri_prefixes": [f"{base}/status/"], "query": self.query_url},
            "anchors": anchors,
        }
