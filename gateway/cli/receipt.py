"""``ecert-gateway receipt verify FILE``: check a log-backed receipt offline.

FILE holds a receipt, a verification answer or a batch answer (JSON). The
log's key is ``--vkey`` (the text ``GET /v1/audit/key`` serves, or a file
holding it); without it, the data folder's own audit key. Nothing is fetched.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import ReceiptError, check_receipt, origin_for, receipts_in
from gateway.audit._keys import load_signing_key
from gateway.audit.witness import WitnessPolicy, check_receipt_witnessed
from gateway.cli import CommandParser
from gateway.settings import Settings, load_settings
from trust.merkle import MerkleProofError
from trust.note import Checkpoint, NoteError, NoteSigner, NoteVerifier

__all__ = ["cmd_verify", "cmd_verify_offline", "register", "verify_receipts"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``receipt verify`` to the top-level parser."""
    receipt = subparsers.add_parser("receipt", help="check the receipts of verification answers")
    commands = receipt.add_subparsers(dest="receipt_command", required=True,
                                      parser_class=CommandParser)
    verify = commands.add_parser(
        "verify", help="check a log-backed receipt offline: signature, inclusion, statements",
        description="Check a log-backed receipt offline: the checkpoint's signature with the "
                    "log's key, the entry's inclusion proof to the checkpoint's root, and, when "
                    "FILE is a whole answer, that the entry states what the answer says. With "
                    "--vkey no data folder is needed.")
    verify.add_argument("file", type=Path, metavar="FILE",
                        help="a receipt, a verification answer or a batch answer (JSON)")
    verify.add_argument("--vkey", metavar="VKEY",
                        help="the log's verifier key (GET /v1/audit/key), or a file holding it "
                             "(default: the data folder's audit key)")
    verify.add_argument("--credential", type=Path, metavar="FILE",
                        help="the credential the answer is about: its SHA-256 must be the "
                             "entry's")
    verify.add_argument("--witnessed", type=Path, metavar="FILE",
                        help="a witnessed checkpoint (GET /v1/audit/checkpoint/witnessed): each "
                             "receipt's checkpoint must be on its history")
    verify.add_argument("--consistency", type=Path, metavar="FILE",
                        help="the consistency proof between the receipt's tree and the witnessed"
                             " one: the JSON of GET /v1/audit/consistency?first=M&second=N")
    verify.add_argument("--witness-policy", type=Path, metavar="FILE",
                        help="a TOML file whose [witness] table names the witnesses and k: the "
                             "witnessed checkpoint must carry k good cosignatures")
    verify.set_defaults(func=cmd_verify, offline=cmd_verify_offline)


def _verifier(args: argparse.Namespace, settings: Settings | None) -> NoteVerifier:
    if args.vkey:
        text: str = args.vkey
        if "+" not in text:  # no vkey has no "+": a file that holds one
            text = Path(text).read_text(encoding="utf-8")
        return NoteVerifier.from_vkey(text.strip())
    if settings is None:
        raise ReceiptError("give the log's key with --vkey VKEY, or --data-dir DIR")
    name = origin_for(settings.gateway_id, settings.audit.origin)
    return NoteSigner(name, load_signing_key(settings.data_dir)).verifier


def verify_receipts(args: argparse.Namespace, settings: Settings | None) -> int:
    """Check every receipt FILE holds; print one line per receipt. ``ReceiptError`` on the
    first that fails."""
    verifier = _verifier(args, settings)
    try:
        document = orjson.loads(args.file.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ReceiptError(f"{args.file}: not JSON ({exc})") from exc
    digest = None
    if args.credential is not None:
        credential = args.credential.read_text(encoding="utf-8").strip()
        digest = hashlib.sha256(credential.encode("utf-8")).hexdigest()
    for n, (receipt, answer) in enumerate(receipts_in(document)):
        try:
            checked = check_receipt(receipt, verifier, answer=answer, credential_sha256=digest)
        except ReceiptError as exc:
            raise ReceiptError(f"receipt {n}: {exc}") from exc
        said = "the answer's statements match" if answer is not None else "no answer given"
        print(f"ok: entry {checked.index} of {checked.origin} is in its signed tree of"
              f" {checked.tree_size} entries; {said}")
        if args.witnessed is not None:
            print(_against_witnessed(args, receipt, verifier, n))
    return 0


def _proof(args: argparse.Namespace) -> tuple[int, int, list[bytes]] | None:
    if args.consistency is None:
        return None
    try:
        data = orjson.loads(args.consistency.read_bytes())
        proof = [base64.b64decode(h, validate=True) for h in data["proof"]]
        return int(data["first"]), int(data["second"]), proof
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"{args.consistency}: not a consistency proof answer ({exc})"
                           ) from exc


def _against_witnessed(args: argparse.Namespace, receipt: Mapping[str, Any],
                       verifier: NoteVerifier, n: int) -> str:
    """Check one receipt's checkpoint against the witnessed one; its ``ok:`` line."""
    witnessed_note = args.witnessed.read_text(encoding="utf-8")
    policy = None
    if args.witness_policy is not None:
        text = args.witness_policy.read_text(encoding="utf-8")
        policy = WitnessPolicy.from_settings(
            load_settings({}, text, {"data_dir": Path()}).witness)
    given = _proof(args)
    try:
        sizes = sorted((int(receipt["tree_size"]),
                        Checkpoint.from_text(witnessed_note[: witnessed_note.index("\n\n") + 1])
                        .size))
        proof: list[bytes] = []
        if sizes[0] not in (0, sizes[1]):
            if given is None or given[:2] != (sizes[0], sizes[1]):
                raise ReceiptError(f"receipt {n}: give --consistency with the proof from"
                                   f" {sizes[0]} to {sizes[1]} (GET /v1/audit/consistency?"
                                   f"first={sizes[0]}&second={sizes[1]})")
            proof = given[2]
        checked = check_receipt_witnessed(str(receipt["checkpoint"]), witnessed_note, proof,
                                          verifier, policy)
    except (NoteError, MerkleProofError, ValueError) as exc:
        if isinstance(exc, ReceiptError):
            raise
        raise ReceiptError(f"receipt {n}: not on the witnessed checkpoint's history: {exc}"
                           ) from exc
    who = ("cosignatures not checked (no --witness-policy)" if checked.witnessed is None else
           f"cosigned by {len(checked.witnessed.cosigned)} of {checked.witnessed.n} witnesses"
           f" (k = {checked.witnessed.k}): {', '.join(sorted(checked.witnessed.cosigned))}")
    return (f"ok: its tree of {checked.receipt_size} entries and the witnessed tree of"
            f" {checked.witnessed_size} are one history; {who}")


def cmd_verify_offline(args: argparse.Namespace) -> int | None:
    """``receipt verify --vkey`` needs no data folder nor any setting: run it without;
    None when the key is to come from the data folder."""
    return verify_receipts(args, None) if args.vkey else None


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """``receipt verify`` with settings (the data folder's key when --vkey is not given)."""
    return verify_receipts(args, settings)
