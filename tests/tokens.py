"""Valid mock tokens mutated and signed again, for tests of what a verifier refuses."""

from __future__ import annotations

import orjson

from mocks import MockRegion, b64url_decode

__all__ = ["resign_raw"]


def resign_raw(region: MockRegion, token: str, part: str, old: bytes, new: bytes) -> str:
    """Replace ``old`` by ``new`` once in the JSON text of ``part`` (``"header"`` or
    ``"payload"``) of ``token``, and sign both texts again exactly as they are, with the
    region's key named by the header's ``kid``."""
    head_b64, body_b64, _ = token.split(".")
    texts = {"header": b64url_decode(head_b64), "payload": b64url_decode(body_b64)}
    assert old in texts[part], texts[part]
    texts[part] = texts[part].replace(old, new, 1)
    kid = orjson.loads(texts["header"])["kid"]
    return region.sign(texts["header"], texts["payload"], kid=kid)
