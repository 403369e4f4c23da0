"""The pure trust core: bytes, a trust list and a time in; a verdict out.

No I/O, no clock, no asyncio. The gateway fetches, caches and logs; this
package decides.

* TrustError
  x TrustListError         the anchor list itself is unusable
  x StatusListError        a status list is malformed, badly signed or stale
  x IdentifierError        a 证照标识 is malformed
  x JoseError              a JWS or JWK is malformed, or its key is not acceptable
"""

from trust._anchors import (
    Anchor,
    AnchorStatus,
    AnchorUse,
    IdentifierPolicy,
    Partner,
    PartnerStatus,
    RevocationReason,
    TrustList,
)
from trust._b64 import b64url_decode, b64url_encode
from trust._claims import Licence, StatusReference
from trust._errors import IdentifierError, JoseError, StatusListError, TrustError, TrustListError
from trust._identifier import (
    CheckOutcome,
    LicenceIdentifier,
    check_identifier,
    iso7064_check_char,
    parse_identifier,
    variant_check_char,
)
from trust._jose import (
    ALLOWED_ALGS,
    MAX_CREDENTIAL_BYTES,
    Alg,
    CompactJWS,
    VerifyingKey,
    key_from_jwk,
    key_from_public,
    parse_compact,
)
from trust._status import StatusList, StatusValue, parse_status_list
from trust._verdict import Check, CheckResult, Indication, SubIndication, Verdict
from trust._verifier import Pending, StatusUnavailable, Verifier

__all__ = [
    "ALLOWED_ALGS",
    "Alg",
    "Anchor",
    "AnchorStatus",
    "AnchorUse",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "CompactJWS",
    "IdentifierError",
    "IdentifierPolicy",
    "Indication",
    "JoseError",
    "Licence",
    "LicenceIdentifier",
    "MAX_CREDENTIAL_BYTES",
    "Partner",
    "PartnerStatus",
    "Pending",
    "RevocationReason",
    "StatusList",
    "StatusListError",
    "StatusReference",
    "StatusUnavailable",
    "StatusValue",
    "SubIndication",
    "TrustError",
    "TrustList",
    "TrustListError",
    "Verdict",
    "Verifier",
    "VerifyingKey",
    "b64url_decode",
    "b64url_encode",
    "check_identifier",
    "iso7064_check_char",
    "key_from_jwk",
    "key_from_public",
    "parse_compact",
    "parse_identifier",
    "parse_status_list",
    "variant_check_char",
]
