"""Encryption of stored secrets (connector signing secrets and endpoint credentials)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hookstream.errors import ConfigurationError, StorageError
from hookstream.settings import Settings

_NOT_A_KEY = "must be a Fernet key (32 url-safe base64 bytes)"


class UndecryptableSecret(StorageError):
    """A stored secret that no key of HOOKSTREAM_SECRETS_KEY decrypts."""


class SecretBox:
    """Encrypts and decrypts small secrets with Fernet (AES-128-CBC + HMAC-SHA256).

    ``keys`` is one Fernet key or several, comma-separated, newest first: the first encrypts,
    every one decrypts. That is how a key is rotated without downtime: every process gets
    ``NEW,OLD``, ``hookstream secrets rotate-key`` re-encrypts what is stored, then ``OLD``
    is dropped.
    """

    def __init__(self, keys: str) -> None:
        parts = [part.strip() for part in keys.split(",")]
        fernets: list[Fernet] = []
        for number, part in enumerate(parts, 1):
            try:
                fernets.append(Fernet(part.encode()))
            except (ValueError, TypeError) as exc:
                # The position, never the value: the other keys on the line are real.
                if len(parts) == 1:
                    raise ConfigurationError(f"HOOKSTREAM_SECRETS_KEY {_NOT_A_KEY}") from exc
                raise ConfigurationError(
                    f"HOOKSTREAM_SECRETS_KEY: key {number} of {len(parts)} (comma-separated, "
                    f"newest first) {_NOT_A_KEY}"
                ) from exc
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)

    def encrypt(self, plaintext: str) -> str:
        """The ciphertext of ``plaintext`` under the first key."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plaintext of ``token``, whichever of the keys it was encrypted under."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise UndecryptableSecret(
                "a stored secret cannot be decrypted: is HOOKSTREAM_SECRETS_KEY the key it was "
                "stored with?"
            ) from exc

    def is_primary(self, token: str) -> bool:
        """Whether ``token`` is encrypted under the first key already."""
        try:
            self._primary.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the first key (its original timestamp kept)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise UndecryptableSecret(
                f"a stored secret cannot be decrypted with any of the {self.key_count} keys of "
                "HOOKSTREAM_SECRETS_KEY"
            ) from exc


def load_secrets_key(settings: Settings) -> str:
    """The secrets key (or keys, comma-separated): from the settings, or, with SQLite, from (or
    generated into) var/."""
    if settings.secrets_key is not None:
        return settings.secrets_key.get_secret_value()
    if not settings.is_sqlite:  # Settings already refuses this; kept for direct callers.
        raise ConfigurationError("HOOKSTREAM_SECRETS_KEY is required with PostgreSQL")
    path = Path(settings.data_dir) / "secrets.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    # Written aside then linked: two processes starting at once agree on one key.
    tmp = path.with_name(f".secrets.key.{os.getpid()}")
    tmp.write_text(key + "\n")
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        key = path.read_text().strip()
    finally:
        tmp.unlink()
    return key
