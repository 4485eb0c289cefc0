"""Client keys: ``Authorization: Bearer KEY`` checked against ``server.api_keys``.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` over every configured
key, so the time taken says nothing about which key or how much of one matched."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

from router_proxy.errors import AuthenticationError

# The client id of every request when no keys are configured (they share one allowance).
ANONYMOUS = "anonymous"


def client_id(key: str) -> str:
    """The id a client key's requests carry (limits, per-client policies): a digest
    prefix, never the key."""
    return hashlib.sha256(key.strip().encode()).hexdigest()[:16]


class ClientAuth:
    def __init__(self, keys: list[SecretStr]) -> None:
        self._digests = [hashlib.sha256(k.get_secret_value().encode()).digest() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, header: str | None) -> str:
        """Raise AuthenticationError unless ``header`` (Authorization) holds a known key;
        return the client's id for rate limits (a digest prefix: never the key)."""
        if not self._digests:
            return ANONYMOUS
        header = header or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(
                "Missing API key: send `Authorization: Bearer KEY`",
                headers={"www-authenticate": "Bearer"},
            )
        digest = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            raise AuthenticationError(
                "Incorrect API key provided", headers={"www-authenticate": "Bearer"}
            )
        return digest.hex()[:16]
