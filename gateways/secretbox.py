"""Encryption at rest for gateway credentials: `cryptography`'s Fernet (AES-128-CBC + HMAC-SHA256,
authenticated, timestamped) behind the `SecretBox` port. Several keys (`SV_ACCOUNTS_ENCRYPTION_KEYS`):
the first encrypts, any decrypts (MultiFernet), and `rotate` re-encrypts a token under the first — so a
key is replaced by prepending the new one, running `studiovault accounts rekey`, then dropping the old.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from gateways.accounts import UndecryptableCredentials


class FernetBox:
    """`SecretBox` with Fernet keys; `keys[0]` encrypts."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("no encryption key: set SV_ACCOUNTS_ENCRYPTION_KEYS (a JSON list of Fernet keys; "
                             "make one with `studiovault accounts new-key`)")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def __repr__(self) -> str:
        return "FernetBox(<keys hidden>)"

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise UndecryptableCredentials("the credentials were encrypted with a key that is not in "
                                           "SV_ACCOUNTS_ENCRYPTION_KEYS (or were altered)") from None

    def rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise UndecryptableCredentials("cannot re-encrypt: no configured key decrypts these credentials") from None


def new_key() -> str:
    """A fresh Fernet key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()
