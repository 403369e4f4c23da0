"""Offline checks of a log-backed receipt, as ``ecert-gateway receipt verify`` runs them.

A receipt (docs/receipts.md) is the answer's audit entry (the exact leaf
bytes), its index, an RFC 6962 inclusion proof and the C2SP checkpoint signed
for the tree the entry's batch made. It holds when the checkpoint's Ed25519
signature verifies with the log's key, the proof leads from the entry's leaf
hash to the checkpoint's root at the checkpoint's size, and, when the answer is
given, the entry states what the answer says. Nothing is fetched.

Errors::

    * ReceiptError      the receipt is malformed, or a check failed (the message says which)
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.audit.event import LOG_RECEIPT_TYPE
from trust.merkle import MerkleProofError, leaf_hash, verify_inclusion
from trust.note import NoteError, NoteVerifier, open_checkpoint

__all__ = ["CheckedReceipt", "ReceiptError", "check_receipt", "receipts_in"]


class ReceiptError(ValueError):
    """A receipt that is malformed or does not verify."""


@dataclass(frozen=True, slots=True)
class CheckedReceipt:
    """A receipt that verified: where its entry is, and what the entry states."""

    index: int
    tree_size: int
    origin: str
    record: dict[str, Any]


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise ReceiptError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError(f"{what} is not standard base64") from exc


def _whole(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ReceiptError(f"{what} is not a whole number")
    return value


def receipts_in(document: object) -> list[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """The receipts a file holds, each with the answer it came in (None for a bare receipt):
    a receipt, a verification answer, or a batch answer (``{"results": [...]}``)."""
    if isinstance(document, Mapping):
        if "results" in document and isinstance(document["results"], list):
            found = []
            for item in document["results"]:
                found += receipts_in(item)
            return found
        receipt = document.get("receipt")
        if isinstance(receipt, Mapping):
            return [(receipt, document)]
        if isinstance(receipt, str):
            raise ReceiptError("the answer carries a JWS receipt (ecert-receipt+jwt): verify it"
                               " with the key its kid names at /.well-known/jwks.json")
        if "type" in document:
            return [(document, None)]
    raise ReceiptError("not a log-backed receipt, a verification answer or a batch answer")


def _statements(record: Mapping[str, Any], answer: Mapping[str, Any]) -> list[str]:
    """What the entry and the answer disagree on (empty when the entry states the answer)."""
    details = record.get("details")
    details = details if isinstance(details, Mapping) else {}
    status = answer.get("status_list")
    licence = answer.get("licence")
    pairs: list[tuple[str, object, object]] = [
        ("event_type", record.get("event_type"), "verification"),
        ("indication", record.get("outcome"), answer.get("indication")),
        ("sub_indication", record.get("sub_indication"), answer.get("sub_indication")),
        ("cn_status", record.get("cn_status"), answer.get("cn_status")),
        ("trust_list_version", record.get("trust_list_version"),
         answer.get("trust_list_version")),
        ("cached", record.get("cached"), answer.get("cached")),
        ("status_list.uri", details.get("status_list"),
         status.get("uri") if isinstance(status, Mapping) else None),
        ("status_list.iat", details.get("status_iat"),
         status.get("iat") if isinstance(status, Mapping) else None),
        ("licence.identifier", record.get("licence_identifier"),
         licence.get("identifier") if isinstance(licence, Mapping) else None),
    ]
    return [f"{name} (entry {stated!r}, answer {said!r})"
            for name, stated, said in pairs if stated != said]


def check_receipt(
    receipt: Mapping[str, Any],
    verifier: NoteVerifier,
    *,
    answer: Mapping[str, Any] | None = None,
    credential_sha256: str | None = None,
) -> CheckedReceipt:
    """Check a log-backed receipt offline; raise ``ReceiptError`` naming the first failure.

    ``verifier`` is the log's key (``GET /v1/audit/key``); ``answer``, when
    given, must be what the entry states; so must ``credential_sha256``.
    """
    if receipt.get("type") != LOG_RECEIPT_TYPE:
        raise ReceiptError(f"receipt type is {receipt.get('type')!r}, not {LOG_RECEIPT_TYPE!r}")
    index = _whole(receipt.get("index"), "index")
    size = _whole(receipt.get("tree_size"), "tree_size")
    leaf = _b64(receipt.get("leaf"), "leaf")
    inclusion = receipt.get("inclusion")
    if not isinstance(inclusion, list):
        raise ReceiptError("inclusion is not a list")
    proof = [_b64(h, f"inclusion[{i}]") for i, h in enumerate(inclusion)]
    note = receipt.get("checkpoint")
    if not isinstance(note, str):
        raise ReceiptError("checkpoint is not a note")
    try:
        body = open_checkpoint(note, verifier)
    except NoteError as exc:
        raise ReceiptError(f"checkpoint: {exc}") from exc
    if body.size != size:
        raise ReceiptError(f"the checkpoint signs a tree of {body.size} entries, the receipt"
                           f" claims {size}")
    if index >= size:
        raise ReceiptError(f"index {index} is outside a tree of {size} entries")
    try:
        verify_inclusion(index, size, leaf_hash(leaf), proof, body.root_hash)
    except MerkleProofError as exc:
        raise ReceiptError(f"entry {index} is not in the signed tree: {exc}") from exc
    try:
        record = orjson.loads(leaf)
    except orjson.JSONDecodeError as exc:
        raise ReceiptError("the entry is not a JSON record") from exc
    if not isinstance(record, dict):
        raise ReceiptError("the entry is not a JSON record")
    differ = [] if answer is None else _statements(record, answer)
    details = record.get("details")
    if credential_sha256 is not None and (
            not isinstance(details, Mapping)
            or details.get("credential_sha256") != credential_sha256.lower()):
        differ.append("credential_sha256")
    if differ:
        raise ReceiptError("the entry does not state what the answer says: " + ", ".join(differ))
    return CheckedReceipt(index, size, body.origin, record)
