"""Measure the verifier's cost per licence beside one raw ES256 verification.

Run: ``python -m scripts.verifier_cost [--licences 2000] [--rounds 7]``. It issues
licences with the mock federation (seeded), verifies each one with
``Verifier.start`` + ``Pending.finish`` (the status list already held, as the
gateway holds it), and in the same run with the straightforward reference
verifier of the tests and with the raw ``cryptography`` ES256 call alone.
Rounds interleave the three; medians (and minima) of the rounds, in
microseconds of CPU time (``time.process_time``) per licence.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mocks import Federation
from tests.trust.reference_verifier import ReferenceVerifier
from trust import TrustList, Verdict, Verifier, parse_status_list
from trust._b64 import b64url_decode


def main() -> None:
    """Print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--licences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    federation = Federation.standard(seed=22, codes=["310000", "320500"])
    now = datetime.now(UTC)
    doc = federation.trust_list(version=3, issued_at=now - timedelta(days=1),
                                next_update=now + timedelta(days=6))
    trust_list = TrustList.from_json(doc)
    regions = [federation["310000"], federation["320500"]]
    tokens = [regions[i % 2].issue().token for i in range(args.licences)]
    statuses = {
        r.status_uri: parse_status_list(r.status_list_token(), trust_list=trust_list,
                                        region=r.region_code, uri=r.status_uri)
        for r in regions}
    verifier = Verifier(trust_list)
    raw = []
    for token in tokens:
        head, body, sig = token.split(".")
        signature = b64url_decode(sig)
        der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                   int.from_bytes(signature[32:], "big"))
        raw.append((der, f"{head}.{body}".encode()))
    ecdsa = ec.ECDSA(hashes.SHA256())
    public_keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for region in regions:
        anchor_key = trust_list.anchors(f"{region.region_code}-lic-2026a")[0].key
        assert anchor_key is not None
        assert isinstance(anchor_key.public_key, ec.EllipticCurvePublicKey)
        public_keys[region.region_code] = anchor_key.public_key
    keys = [public_keys[regions[i % 2].region_code] for i in range(len(tokens))]

    reference = ReferenceVerifier(trust_list)

    def run_verifier(verifier: Verifier | ReferenceVerifier) -> float:
        at = datetime.now(UTC)
        start = time.process_time()
        for token in tokens:
            pending = verifier.start(token, at=at)
            if not isinstance(pending, Verdict):
                ref = pending.status_needed
                pending.finish(None if ref is None else statuses[ref.uri])
        return (time.process_time() - start) / len(tokens) * 1e6

    def run_raw() -> float:
        start = time.process_time()
        for (der, signing_input), public_key in zip(raw, keys, strict=True):
            public_key.verify(der, signing_input, ecdsa)
        return (time.process_time() - start) / len(tokens) * 1e6

    for token in tokens:
        verdict = verifier.check(token, at=datetime.now(UTC), status=statuses)
        assert verdict.passed, verdict.checks
    run_verifier(verifier)
    run_verifier(reference)
    lean: list[float] = []
    ref: list[float] = []
    es256: list[float] = []
    for _ in range(args.rounds):
        lean.append(run_verifier(verifier))
        ref.append(run_verifier(reference))
        es256.append(run_raw())
    print(f"licences {len(tokens)}, rounds {args.rounds}; us per licence, median (min)")
    raw_med = statistics.median(es256)
    for name, times in (("reference start+finish", ref), ("lean start+finish", lean),
                        ("raw ES256 verify", es256)):
        med = statistics.median(times)
        print(f"{name:24} {med:7.1f} ({min(times):6.1f})   Python beside ES256: "
              f"{med - raw_med:6.1f} ({(med - raw_med) / raw_med:.2f}x)")


if __name__ == "__main__":
    main()
