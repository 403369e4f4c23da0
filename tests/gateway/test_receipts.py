"""Log-backed receipts from real HTTP answers, checked by a verifier written here.

The verifier below uses RFC 6962 2.1 (MTH, PATH, PROOF) and the C2SP
signed-note and tlog-checkpoint texts alone, with hashlib and cryptography's
Ed25519: nothing of the gateway's own Merkle or note code.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.__main__ import main
from gateway.credentials.store import IdentityKind, Role, add_identity
from gateway.settings import SettingsError, load_settings
from gateway.web.app import create_app
from mocks import RunningFederation
from tests.gateway.conftest import trust_document
from trust import TrustList

Client = TestClient[web.Request, web.Application]

# -- an independent verifier ------------------------------------------------------------


class RejectedError(Exception):
    """The receipt does not verify."""


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_below(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_from_path(m: int, n: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """MTH(D[n]) rebuilt from leaf m's hash and PATH(m, D[n]), whose last hash is the
    sibling nearest the root (RFC 6962 2.1.1)."""
    if n == 1:
        if path:
            raise RejectedError("path too long")
        return leaf_hash
    if not path:
        raise RejectedError("path too short")
    k = _largest_power_below(n)
    *below, sibling = path
    if m < k:
        return _sha(b"\x01" + root_from_path(m, k, leaf_hash, below) + sibling)
    return _sha(b"\x01" + sibling + root_from_path(m - k, n - k, leaf_hash, below))


def roots_from_consistency(m: int, n: int, proof: list[bytes], old_root: bytes,
                           whole: bool = True) -> tuple[bytes, bytes]:
    """(MTH(D[m]), MTH(D[n])) rebuilt from SUBPROOF(m, D[n], whole) (RFC 6962 2.1.2)."""
    if m == n:
        if whole:
            if proof:
                raise RejectedError("consistency proof too long")
            return old_root, old_root
        if len(proof) != 1:
            raise RejectedError("consistency proof of the wrong length")
        return proof[0], proof[0]
    if not proof:
        raise RejectedError("consistency proof too short")
    k = _largest_power_below(n)
    *below, top = proof
    if m <= k:
        old, new = roots_from_consistency(m, k, below, old_root, whole)
        return old, _sha(b"\x01" + new + top)
    old, new = roots_from_consistency(m - k, n - k, below, old_root, False)
    return _sha(b"\x01" + top + old), _sha(b"\x01" + top + new)


def open_note(note: str, vkey: str) -> tuple[str, int, bytes]:
    """A C2SP checkpoint's (origin, size, root) once its Ed25519 signature verifies."""
    name, key_id_hex, key_b64 = vkey.strip().split("+", 2)
    typed = base64.b64decode(key_b64)
    if typed[:1] != b"\x01":
        raise RejectedError("not an Ed25519 vkey")
    key_id = _sha(name.encode() + b"\n" + typed)[:4]
    if key_id.hex() != key_id_hex:
        raise RejectedError("vkey id does not match")
    text, sep, signatures = note.partition("\n\n")
    if not sep:
        raise RejectedError("no signature block")
    text += "\n"
    for line in signatures.splitlines():
        prefix = f"\u2014 {name} "
        if not line.startswith(prefix):
            continue
        raw = base64.b64decode(line[len(prefix):])
        if raw[:4] != key_id:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(typed[1:]).verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise RejectedError("bad signature") from exc
        origin, size, root = text.splitlines()[:3]
        return origin, int(size), base64.b64decode(root)
    raise RejectedError("no signature by the log's key")


def check(receipt: dict[str, Any], vkey: str) -> dict[str, Any]:
    """The receipt's entry (parsed) once the receipt verifies; ``RejectedError`` otherwise."""
    origin, size, root = open_note(receipt["checkpoint"], vkey)
    if origin != vkey.split("+", 1)[0]:
        raise RejectedError("origin is not the key's name")
    if size != receipt["tree_size"] or not 0 <= receipt["index"] < size:
        raise RejectedError("tree size or index do not fit the checkpoint")
    leaf = base64.b64decode(receipt["leaf"], validate=True)
    path = [base64.b64decode(h, validate=True) for h in receipt["inclusion"]]
    if root_from_path(receipt["index"], size, _sha(b"\x00" + leaf), path) != root:
        raise RejectedError("inclusion proof does not lead to the signed root")
    entry: dict[str, Any] = orjson.loads(leaf)
    return entry


# -- fixtures ---------------------------------------------------------------------------


AppFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
def gateway(aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path,
            running: RunningFederation) -> AppFactory:
    """A gateway with its real audit log in the test's data folder."""

    async def start(**settings: Any) -> Client:
        config = load_settings({}, None, {"data_dir": tmp_path, **settings})
        tl = TrustList.from_json(trust_document(running.federation))
        return await aiohttp_client(create_app(config, trust_list=tl))

    return start


@pytest.fixture
async def tokens(tmp_path: Path) -> dict[str, str]:
    """A local system's key and an auditor's token in the data folder."""
    def make() -> dict[str, str]:
        return {"client": add_identity(tmp_path, IdentityKind.CLIENT, "window-01"),
                "auditor": add_identity(tmp_path, IdentityKind.OPERATOR, "alice", Role.AUDITOR)}
    return await asyncio.to_thread(make)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _verify(client: Client, key: str, credential: str, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/v1/verifications", headers=_auth(key),
                             json={"credential": credential, **extra})
    assert 200 == resp.status
    answer: dict[str, Any] = await resp.json()
    return answer


def _states_answer(entry: dict[str, Any], answer: dict[str, Any], credential: str) -> None:
    """The entry carries every statement the spec asks of a receipt, as the answer says."""
    assert "verification" == entry["event_type"]
    assert "330500" == entry["gateway"]
    assert entry["time"].endswith("Z")
    assert hashlib.sha256(credential.encode()).hexdigest() == entry["details"][
        "credential_sha256"]
    assert (answer["indication"], answer["sub_indication"], answer["cn_status"],
            answer["trust_list_version"], answer["cached"]) == (
        entry["outcome"], entry["sub_indication"], entry["cn_status"],
        entry["trust_list_version"], entry["cached"])
    assert answer["status_list"] == {"uri": entry["details"]["status_list"],
                                     "iat": entry["details"]["status_iat"]}
    # Holder data only as pseudonyms and masks, never raw.
    holder = answer["licence"]["holder"]
    assert holder["code"].encode() not in base64.b64decode(answer["receipt"]["leaf"])


# -- tests ------------------------------------------------------------------------------


class TestAnswersCarryLogReceipts:
    """Every verification answer's receipt verifies offline with the published key."""

    async def test_single_answer(self, gateway: AppFactory, running: RunningFederation,
                                 tokens: dict[str, str]) -> None:
        """A single answer's receipt verifies and its entry states the answer."""
        client = await gateway()
        token = running.federation["310000"].issue().token
        answer = await _verify(client, tokens["client"], token, use_cause="办理营业执照变更")
        assert "TOTAL_PASSED" == answer["indication"]
        receipt = answer["receipt"]
        assert {"type", "index", "tree_size", "leaf", "inclusion", "checkpoint"} == set(receipt)
        assert "ecert-log-receipt" == receipt["type"]
        vkey = await (await client.get("/v1/audit/key")).text()
        _states_answer(check(receipt, vkey), answer, token)

    async def test_batch_and_cache_hit(self, gateway: AppFactory,
                                       running: RunningFederation,
                                       tokens: dict[str, str]) -> None:
        """Every item of a batch, and a cache hit, carries a receipt that verifies."""
        client = await gateway()
        sh = running.federation["310000"]
        tokens_ = [sh.issue().token for _ in range(5)]
        resp = await client.post("/v1/verifications/batch", headers=_auth(tokens["client"]),
                                 json={"items": [{"credential": t} for t in tokens_]})
        assert 200 == resp.status
        results = (await resp.json())["results"]
        vkey = await (await client.get("/v1/audit/key")).text()
        for token, answer in zip(tokens_, results, strict=True):
            _states_answer(check(answer["receipt"], vkey), answer, token)
        assert len({a["receipt"]["index"] for a in results}) == 5
        hit = await _verify(client, tokens["client"], tokens_[0])
        assert hit["cached"] is True
        entry = check(hit["receipt"], vkey)
        _states_answer(entry, hit, tokens_[0])
        assert entry["cached"] is True

    async def test_failing_verdict(self, gateway: AppFactory, running: RunningFederation,
                                   tokens: dict[str, str]) -> None:
        """A failing verdict is receipted as well (no status list: both null)."""
        client = await gateway()
        answer = await _verify(client, tokens["client"], "not-a-jws")
        assert "FORMAT_FAILURE" == answer["sub_indication"]
        entry = check(answer["receipt"], await (await client.get("/v1/audit/key")).text())
        assert ("TOTAL_FAILED", "FORMAT_FAILURE", 12) == (
            entry["outcome"], entry["sub_indication"], entry["cn_status"])
        assert (None, None) == (entry["details"]["status_list"], entry["details"]["status_iat"])

    async def test_jws_form_is_still_selectable(self, gateway: AppFactory,
                                                running: RunningFederation,
                                                tokens: dict[str, str]) -> None:
        """``receipt_form = "jws"`` answers with an ecert-receipt+jwt, as before."""
        client = await gateway(receipt_form="jws")
        answer = await _verify(client, tokens["client"], running.federation["310000"].issue().token)
        head = orjson.loads(base64.urlsafe_b64decode(answer["receipt"].split(".")[0] + "=="))
        assert "ecert-receipt+jwt" == head["typ"]


class TestTamperedReceiptsFail:
    """A receipt changed in any part no longer verifies, here and with the CLI."""

    @staticmethod
    def _flip(b64: str) -> str:
        raw = bytearray(base64.b64decode(b64))
        raw[len(raw) // 2] ^= 0x01
        return base64.b64encode(bytes(raw)).decode()

    @staticmethod
    def _resign(note: str) -> str:
        text, _, signature = note.partition("\n\n")
        head, _, sig = signature.rstrip("\n").rpartition(" ")
        return f"{text}\n\n{head} {TestTamperedReceiptsFail._flip(sig)}\n"

    def _variants(self, receipt: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in ("entry", "proof", "index", "tree size", "signature", "root"):
            changed = copy.deepcopy(receipt)
            match name:
                case "entry":
                    leaf = base64.b64decode(changed["leaf"])
                    changed["leaf"] = base64.b64encode(
                        leaf.replace(b"TOTAL_PASSED", b"TOTAL_FAILED")).decode()
                case "proof":
                    changed["inclusion"][0] = self._flip(changed["inclusion"][0])
                case "index":
                    changed["index"] += 1 if changed["index"] == 0 else -1
                case "tree size":
                    changed["tree_size"] += 1
                case "signature":
                    changed["checkpoint"] = self._resign(changed["checkpoint"])
                case "root":
                    origin, size, root, rest = changed["checkpoint"].split("\n", 3)
                    changed["checkpoint"] = "\n".join([origin, size, self._flip(root), rest])
            out[name] = changed
        return out

    async def test_every_change_is_caught(self, gateway: AppFactory,
                                          running: RunningFederation,
                                          tokens: dict[str, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
        """Entry, proof, index, tree size, signature and root: each change fails both
        verifiers; the untouched receipt passes both."""
        client = await gateway()
        sh = running.federation["310000"]
        for _ in range(5):  # an inclusion proof of several hashes
            await _verify(client, tokens["client"], sh.issue().token)
        token = sh.issue().token
        answer = await _verify(client, tokens["client"], token)
        receipt = answer["receipt"]
        assert len(receipt["inclusion"]) >= 2
        vkey = await (await client.get("/v1/audit/key")).text()
        check(receipt, vkey)
        (tmp_path / "vkey").write_text(vkey)

        async def cli(document: dict[str, Any], *extra: str) -> tuple[int, str]:
            path = tmp_path / "answer.json"
            path.write_bytes(orjson.dumps(document))
            code = await asyncio.to_thread(
                main, ["receipt", "verify", str(path), "--vkey", vkey, *extra])
            out, err = capsys.readouterr()
            return code, out + err

        code, text = await cli(answer)
        assert 0 == code, text
        assert text.startswith("ok: entry")
        for name, changed in self._variants(receipt).items():
            with pytest.raises(RejectedError):
                check(changed, vkey)
            code, text = await cli({**answer, "receipt": changed})
            assert 1 == code, name
            assert "receipt does not verify" in text, name
        # The entry must state the answer: an answer changed after the fact is caught.
        code, text = await cli({**answer, "indication": "TOTAL_FAILED"})
        assert 1 == code
        assert "indication" in text
        # And the credential, when given, must be the one the entry names.
        (tmp_path / "credential").write_text(token)
        assert 0 == (await cli(answer, "--credential", str(tmp_path / "credential")))[0]
        (tmp_path / "credential").write_text(sh.issue().token)
        assert 1 == (await cli(answer, "--credential", str(tmp_path / "credential")))[0]
        # The key may come from a file, or from the data folder when --vkey is not given.
        assert 0 == (await cli(answer, "--vkey", str(tmp_path / "vkey")))[0]
        path = tmp_path / "answer.json"
        code = await asyncio.to_thread(
            main, ["receipt", "verify", str(path), "--data-dir", str(tmp_path)])
        assert 0 == code
        capsys.readouterr()


class TestConsistentWithLaterCheckpoints:
    """A receipt's tree is a prefix of every tree the log publishes later."""

    async def test_consistency_to_the_published_checkpoint(
            self, gateway: AppFactory, running: RunningFederation,
            tokens: dict[str, str]) -> None:
        """The consistency proof the API gives leads from the receipt's signed root to the
        root of the checkpoint published afterwards."""
        client = await gateway()
        sh = running.federation["310000"]
        first = await _verify(client, tokens["client"], sh.issue().token)
        for _ in range(7):
            await _verify(client, tokens["client"], sh.issue().token)
        vkey = await (await client.get("/v1/audit/key")).text()
        _, m, old_root = open_note(first["receipt"]["checkpoint"], vkey)
        _, n, new_root = open_note(await (await client.get("/v1/audit/checkpoint")).text(), vkey)
        assert m < n
        resp = await client.get(f"/v1/audit/consistency?first={m}&second={n}",
                                headers=_auth(tokens["auditor"]))
        assert 200 == resp.status
        proof = [base64.b64decode(h) for h in (await resp.json())["proof"]]
        assert (old_root, new_root) == roots_from_consistency(m, n, proof, old_root)
        bad = bytes(32)  # a wrong old root does not pass
        assert (bad, new_root) != roots_from_consistency(m, n, proof, bad)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.allow_blocking
def test_worked_example_in_the_docs_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/receipts.md's example answer verifies with its vkey, here and with the CLI."""
    answer = orjson.loads((DOCS / "receipt-answer.json").read_bytes())
    vkey = (DOCS / "receipt.vkey").read_text()
    entry = check(answer["receipt"], vkey)
    assert (5, 6) == (answer["receipt"]["index"], answer["receipt"]["tree_size"])
    assert answer["indication"] == entry["outcome"]
    assert 0 == main(["receipt", "verify", str(DOCS / "receipt-answer.json"),
                      "--vkey", str(DOCS / "receipt.vkey")])
    assert capsys.readouterr().out.startswith("ok: entry 5 of huzhou.ecert-gateway/audit")


def test_receipt_form_is_log_or_jws() -> None:
    """The default is the log-backed form; anything but log or jws is refused by name."""
    assert "log" == load_settings({}, None, {"data_dir": Path("d")}).receipt_form
    assert "jws" == load_settings({"ECERT_RECEIPT_FORM": "jws"}, None,
                                  {"data_dir": Path("d")}).receipt_form
    with pytest.raises(SettingsError, match="receipt_form"):
        load_settings({}, 'receipt_form = "jwt"', {"data_dir": Path("d")})
