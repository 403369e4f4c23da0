"""Mock partner regions for tests, demos and benchmarks.

Each :class:`MockRegion` behaves like a partner gateway: it owns a root CA,
a licence-signing certificate and keys for licences and status lists (ES256,
or SM2SM3 for 毕节 and 白山 in the standard federation) and for requests
(ES256); it issues ``ecert+jwt`` licences per spec/ecert-profile.md, keeps an
IETF Token Status List, writes its trust-list entry, and signs request tokens
for Huzhou's partner API. :class:`Federation` builds the standard partners
and their trust list, :meth:`Federation.full` the 43 partners of the full federation
(every delta city but Huzhou, and the far partners) with their retired keys
(:class:`RetiredKey`); :func:`serve_federation` puts each region behind a real
HTTP server on loopback. ``python -m mocks`` runs them as a process.
:class:`PartnerClient` signs and sends a partner region's queries of Huzhou's
licences (``POST /v1/partner/licences/query``).

Nothing here imports the gateway; verification is deliberately left to it
(and to independent libraries in the tests).
"""

from mocks._catalogue import (
    BUSINESS_LICENCE,
    CONSTRUCTION_WORKER,
    LICENCE_TYPES,
    SHIP_COMBINED,
    SHIP_COMPONENT_TYPES,
    LicenceType,
)
from mocks._federation import (
    COMPROMISED_REGION,
    FEDERATIONS,
    FULL_REGIONS,
    HOME_REGION,
    STANDARD_PARTNERS,
    Federation,
    FederationName,
    PartnerSpec,
    RetiredKey,
)
from mocks._jws import (
    ALGORITHMS,
    SM2_ALG,
    Alg,
    b64url_decode,
    b64url_encode,
    public_jwk,
    sign_compact,
)
from mocks._partner_client import QUERY_PATH, PartnerAnswer, PartnerClient
from mocks._people import (
    IDENTIFIER_ROOT,
    lenient_check_char,
    licence_identifier,
    make_resident_id,
    make_uscc,
    strict_check_char,
)
from mocks._region import (
    DELETE,
    KEYS_VALID_FROM,
    KEYS_VALID_UNTIL,
    ROOT_VALID_UNTIL,
    IssuedComponent,
    IssuedLicence,
    MockRegion,
    rfc3339,
)
from mocks._server import (
    REGION_KEY,
    RunningFederation,
    create_region_app,
    reserve_sockets,
    serve_federation,
)
from mocks._status import LicenceState
from mocks._witness import ADD_CHECKPOINT_PATH, MockLog, MockWitness, create_witness_app

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "ALGORITHMS",
    "Alg",
    "BUSINESS_LICENCE",
    "COMPROMISED_REGION",
    "CONSTRUCTION_WORKER",
    "DELETE",
    "FEDERATIONS",
    "FULL_REGIONS",
    "Federation",
    "FederationName",
    "HOME_REGION",
    "IDENTIFIER_ROOT",
    "IssuedComponent",
    "IssuedLicence",
    "KEYS_VALID_FROM",
    "KEYS_VALID_UNTIL",
    "LICENCE_TYPES",
    "LicenceState",
    "LicenceType",
    "MockLog",
    "MockRegion",
    "MockWitness",
    "PartnerAnswer",
    "PartnerClient",
    "PartnerSpec",
    "QUERY_PATH",
    "REGION_KEY",
    "ROOT_VALID_UNTIL",
    "RetiredKey",
    "RunningFederation",
    "SHIP_COMBINED",
    "SHIP_COMPONENT_TYPES",
    "SM2_ALG",
    "STANDARD_PARTNERS",
    "b64url_decode",
    "b64url_encode",
    "create_region_app",
    "create_witness_app",
    "lenient_check_char",
    "licence_identifier",
    "make_resident_id",
    "make_uscc",
    "public_jwk",
    "reserve_sockets",
    "rfc3339",
    "serve_federation",
    "sign_compact",
    "strict_check_char",
]
