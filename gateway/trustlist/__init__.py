"""The operator-managed list of trust anchors.

* ``service``: the one workflow for every change (proposals, dual-controlled approval,
  import), versions and export, the stores
* ``state``: the snapshot every request is judged on
* ``sync``: a change made on one instance served by all of them
* ``routes``: ``/v1/admin/...`` for operators and approvers

The names below are the feature's face for code outside it other than its
routes (the CLI): the service, what it returns and what it raises; never the
store nor the steps a change goes through inside the service.
"""

from gateway.trustlist.service import (
    AdminError,
    AdminRefusal,
    ImportOutcome,
    Proposal,
    ProposalStatus,
    StoreConflictError,
    StoredVersion,
    TrustListService,
    TrustStoreError,
    Vote,
    change_summary,
    export_keys,
    trusted_signers,
)

__all__ = [
    "AdminError",
    "AdminRefusal",
    "ImportOutcome",
    "Proposal",
    "ProposalStatus",
    "StoreConflictError",
    "StoredVersion",
    "TrustListService",
    "TrustStoreError",
    "Vote",
    "change_summary",
    "export_keys",
    "trusted_signers",
]
