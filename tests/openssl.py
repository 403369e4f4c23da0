"""The ``openssl`` command line as an independent SM2 implementation for interop tests.

OpenSSL 3 signs and verifies SM2 with SM3 over ``Z_A ‖ message`` (``pkeyutl -rawin
-digest sm3``), the signer ID given as ``distid`` (without it OpenSSL 3.0 uses an
empty ID). Signatures travel as DER; these helpers convert to and from the JWS
form ``r ‖ s``. Without the command the test is skipped, or fails when
``ECERT_REQUIRE_SERVICES=1`` (as in CI).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tests.services import unavailable

__all__ = ["OpenSslSm2Key", "openssl", "openssl_sm2_verify", "sm2_spki"]

DEFAULT_ID = "1234567812345678"
# RFC 5480 SubjectPublicKeyInfo: id-ecPublicKey, the SM2 curve 1.2.156.10197.1.301,
# then the BIT STRING of the uncompressed point (written out here, apart from trust/).
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


def sm2_spki(x: bytes, y: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of the SM2 key (x, y), as OpenSSL reads it."""
    return _SPKI_PREFIX + b"\x04" + x + y


def openssl() -> str:
    """The path of the ``openssl`` command (OpenSSL 3 with SM2), or skip/fail."""
    found = shutil.which("openssl")
    if found is None:
        unavailable("the openssl command is not on PATH (SM2 interop tests need OpenSSL 3)")
    assert found is not None
    version = subprocess.run([found, "version"], capture_output=True, text=True,
                             check=True).stdout
    if not version.startswith("OpenSSL 3"):
        unavailable(f"the openssl command is not OpenSSL 3: {version.strip()}")
    return found


def _run(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([openssl(), *args], input=data, capture_output=True, check=False)


@dataclass(frozen=True, slots=True)
class OpenSslSm2Key:
    """An SM2 key made by ``openssl genpkey``, kept as PEM files in a folder."""

    private_pem: Path
    public_der: bytes
    """The SubjectPublicKeyInfo (``openssl pkey -pubout -outform DER``)."""

    @classmethod
    def generate(cls, folder: Path) -> OpenSslSm2Key:
        """``openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:SM2``."""
        private = folder / "sm2-key.pem"
        made = _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2",
                    "-out", str(private))
        assert 0 == made.returncode, made.stderr
        public = _run("pkey", "-in", str(private), "-pubout", "-outform", "DER")
        assert 0 == public.returncode, public.stderr
        return cls(private, public.stdout)

    def self_signed_ca(self, folder: Path, *, ca: bool = True) -> bytes:
        """A self-signed CA certificate of this key, signed SM2-with-SM3 (DER), from
        ``openssl req -x509 -sm3`` (``ca=False``: basicConstraints CA:FALSE)."""
        made = _run("req", "-new", "-x509", "-key", str(self.private_pem), "-sm3",
                    "-sigopt", f"distid:{DEFAULT_ID}", "-subj", "/C=CN/O=Bijie/CN=SM2 root",
                    "-days", "3650",
                    "-addext", f"basicConstraints=critical,CA:{'TRUE' if ca else 'FALSE'}",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-outform", "DER", "-out", str(folder / "sm2-root.der"))
        assert 0 == made.returncode, made.stderr
        return (folder / "sm2-root.der").read_bytes()

    def issue(self, subject: OpenSslSm2Key, issuer_der: bytes, folder: Path, *,
              distid: str | None = DEFAULT_ID, days: int = 365, ca: bool = False) -> bytes:
        """A licence-signing certificate (CA:FALSE, digitalSignature, SKI and AKI) for
        ``subject``'s key, issued SM2-with-SM3 with this key under the certificate
        ``issuer_der`` (``openssl req -new`` then ``openssl x509 -req -sm3``), as DER.
        ``distid=None`` signs as OpenSSL 3.0 does without ``-sigopt distid`` (an empty ID);
        ``ca=True`` makes an intermediate CA (CA:TRUE, keyCertSign) instead."""
        issuer = folder / "issuer.der"
        issuer.write_bytes(issuer_der)
        request = folder / "subject.csr"
        name = "SM2 intermediate CA" if ca else "SM2 licence signer"
        made = _run("req", "-new", "-key", str(subject.private_pem), "-sm3",
                    "-sigopt", f"distid:{DEFAULT_ID}", "-subj",
                    f"/C=CN/O=Bijie/CN={name}", "-out", str(request))
        assert 0 == made.returncode, made.stderr
        extensions = folder / "signer.cnf"
        usage = ("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                 if ca else
                 "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
        extensions.write_text(f"{usage}subjectKeyIdentifier=hash\n"
                              "authorityKeyIdentifier=keyid\n")
        sigopt = [] if distid is None else ["-sigopt", f"distid:{distid}"]
        made = _run("x509", "-req", "-in", str(request), "-vfyopt", f"distid:{DEFAULT_ID}",
                    "-CA", str(issuer), "-CAform", "DER", "-CAkey", str(self.private_pem),
                    "-sm3", *sigopt, "-extfile", str(extensions), "-set_serial", "7",
                    "-days", str(days), "-outform", "DER", "-out", str(folder / "signer.der"))
        assert 0 == made.returncode, made.stderr
        return (folder / "signer.der").read_bytes()

    def sign(self, message: bytes, folder: Path, *, distid: str = DEFAULT_ID) -> bytes:
        """``openssl pkeyutl -sign -rawin -digest sm3`` of ``message``, as r ‖ s."""
        source = folder / "message.bin"
        source.write_bytes(message)
        signed = _run("pkeyutl", "-sign", "-inkey", str(self.private_pem), "-rawin",
                      "-digest", "sm3", "-pkeyopt", f"distid:{distid}", "-in", str(source))
        assert 0 == signed.returncode, signed.stderr
        r, s = decode_dss_signature(signed.stdout)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def openssl_sm2_verify(spki: bytes, message: bytes, signature: bytes, folder: Path, *,
                       distid: str = DEFAULT_ID) -> bool:
    """``openssl pkeyutl -verify -rawin -digest sm3`` of an r ‖ s signature."""
    key = folder / "sm2-public.der"
    key.write_bytes(spki)
    source = folder / "message.bin"
    source.write_bytes(message)
    sigfile = folder / "signature.der"
    sigfile.write_bytes(encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                             int.from_bytes(signature[32:], "big")))
    done = _run("pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", str(key),
                "-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{distid}",
                "-in", str(source), "-sigfile", str(sigfile))
    return done.returncode == 0 and b"Signature Verified Successfully" in done.stdout
