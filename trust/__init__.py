"""The pure trust core: bytes, a trust list and a time in; a verdict out.

No I/O, no clock, no asyncio. The gateway fetches, caches and logs; this
package decides.

Errors (a bad licence is never one: ``Verifier`` answers it with a ``Verdict``)::

* TrustError
  x TrustListError         the anchor list itself is unusable
    x ChangeError          a proposed change to the trust list is not acceptable
    x SignedListError      a signed trust-list export is refused (signature, rollback, freeze)
  x StatusListError        a status list is malformed, badly signed or stale
  x IdentifierError        a 证照标识 is malformed
  x RequestTokenError      a partner's request token does not authenticate its request
  x AgreementError         a partner's agreement does not cover its request
  x JoseError              a JWS or JWK is malformed, or its key is not acceptable
    x Sm2UnavailableError  no usable SM2 (libcrypto missing, older than OpenSSL 3, no SM2)
  x MerkleProofError       an inclusion or consistency proof does not hold (RFC 9162)
  x NoteError              a signed note or checkpoint is malformed or badly signed (C2SP)
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
from trust._chain import MAX_X5C_CERTIFICATES, MAX_X5C_ROOTS, MAX_X5C_SIGNATURE_CHECKS
from trust._changes import (
    EXPORT_ALGS,
    TRUSTLIST_TYP,
    Change,
    ChangeError,
    ChangeKind,
    DiffEntry,
    ImportRefusal,
    SignedListError,
    SignedTrustList,
    apply_changes,
    canonical_json,
    check_changes,
    diff_documents,
    export_claims,
    export_signed,
    is_region_code,
    parse_changes,
    verify_export,
)
from trust._claims import MAX_COMPONENTS, Component, Licence, StatusReference
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
    parse_json,
)
from trust._request import (
    MAX_REQUEST_LIFETIME_S,
    MAX_REQUEST_TOKEN_BYTES,
    REQUEST_SKEW_S,
    REQUEST_TYP,
    AgreementError,
    PartnerRequest,
    PendingRequest,
    RequestTokenError,
    check_agreement,
    check_request_token,
    start_request_token,
)
from trust._sm2 import SM2_DEFAULT_SIGNER_ID, Sm2PrivateKey, Sm2PublicKey, Sm2UnavailableError
from trust._status import StatusList, StatusValue, parse_status_list
from trust._timeutil import CHINA_TZ, day_start_s
from trust._uri import status_uri_problem, uri_under_prefix
from trust._verdict import Check, CheckResult, Indication, SubIndication, Verdict
from trust._verifier import Pending, StatusUnavailable, Verifier
from trust.merkle import (
    MerkleProofError,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from trust.note import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_checkpoint,
    open_note,
    sign_note,
)

__all__ = [
    "ALLOWED_ALGS",
    "AgreementError",
    "Alg",
    "Anchor",
    "AnchorStatus",
    "AnchorUse",
    "CHINA_TZ",
    "Change",
    "ChangeError",
    "ChangeKind",
    "Check",
    "CheckOutcome",
    "CheckResult",
    "Checkpoint",
    "CompactJWS",
    "Component",
    "DiffEntry",
    "EXPORT_ALGS",
    "IdentifierError",
    "IdentifierPolicy",
    "ImportRefusal",
    "Indication",
    "JoseError",
    "Licence",
    "LicenceIdentifier",
    "MAX_COMPONENTS",
    "MAX_CREDENTIAL_BYTES",
    "MAX_REQUEST_LIFETIME_S",
    "MAX_REQUEST_TOKEN_BYTES",
    "MAX_X5C_CERTIFICATES",
    "MAX_X5C_ROOTS",
    "MAX_X5C_SIGNATURE_CHECKS",
    "MerkleProofError",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "Partner",
    "PartnerRequest",
    "PartnerStatus",
    "Pending",
    "PendingRequest",
    "REQUEST_SKEW_S",
    "REQUEST_TYP",
    "RequestTokenError",
    "RevocationReason",
    "SM2_DEFAULT_SIGNER_ID",
    "SignedListError",
    "SignedTrustList",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "Sm2UnavailableError",
    "StatusList",
    "StatusListError",
    "StatusReference",
    "StatusUnavailable",
    "StatusValue",
    "SubIndication",
    "TRUSTLIST_TYP",
    "TrustError",
    "TrustList",
    "TrustListError",
    "Verdict",
    "Verifier",
    "VerifyingKey",
    "apply_changes",
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "check_agreement",
    "check_changes",
    "check_identifier",
    "check_request_token",
    "day_start_s",
    "diff_documents",
    "export_claims",
    "export_signed",
    "is_region_code",
    "iso7064_check_char",
    "key_from_jwk",
    "key_from_public",
    "key_id",
    "leaf_hash",
    "open_checkpoint",
    "open_note",
    "parse_changes",
    "parse_compact",
    "parse_identifier",
    "parse_json",
    "parse_status_list",
    "root_from_leaf_hashes",
    "sign_note",
    "start_request_token",
    "status_uri_problem",
    "uri_under_prefix",
    "variant_check_char",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
]
