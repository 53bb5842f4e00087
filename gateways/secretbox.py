"""Encryption at rest for gateway credentials: `cryptography`'s Fernet (AES-128-CBC + HMAC-SHA256,
authenticated, timestamped) behind the `SecretBox` port. Several keys (`SV_ACCOUNTS_ENCRYPTION_KEYS`):
the first encrypts, any decrypts (MultiFernet), and `rotate` re-encrypts a token under the first — so a
key is replaced by prepending the new one, running `studiovault accounts rekey`, then dropping the old.

`cryptography` costs 6-7 MB resident (its OpenSSL is its own), so it is imported when a secret is first
sealed or opened, not when the box is made: a worker has a box for reconciliation but applies events
without ever opening one. The keys are checked at once all the same.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from config import is_fernet_key
from gateways.accounts import UndecryptableCredentials

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet


class FernetBox:
    """`SecretBox` with Fernet keys; `keys[0]` encrypts."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("no encryption key: set SV_ACCOUNTS_ENCRYPTION_KEYS (a JSON list of Fernet keys; "
                             "make one with `studiovault accounts new-key`)")
        if not all(is_fernet_key(key) for key in keys):
            raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return "FernetBox(<keys hidden>)"

    @functools.cached_property
    def _fernet(self) -> MultiFernet:
        from cryptography.fernet import Fernet, MultiFernet  # noqa: PLC0415 - see the module

        return MultiFernet([Fernet(key.encode()) for key in self._keys])

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, token: str) -> bytes:
        from cryptography.fernet import InvalidToken  # noqa: PLC0415 - see the module

        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise UndecryptableCredentials("the credentials were encrypted with a key that is not in "
                                           "SV_ACCOUNTS_ENCRYPTION_KEYS (or were altered)") from None

    def rotate(self, token: str) -> str:
        from cryptography.fernet import InvalidToken  # noqa: PLC0415 - see the module

        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise UndecryptableCredentials("cannot re-encrypt: no configured key decrypts these credentials") from None


def new_key() -> str:
    """A fresh Fernet key (url-safe base64 of 32 random bytes)."""
    from cryptography.fernet import Fernet  # noqa: PLC0415 - see the module

    return Fernet.generate_key().decode()
