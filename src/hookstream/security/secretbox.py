"""Encryption of stored secrets (connector signing secrets and endpoint credentials)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from hookstream.errors import ConfigurationError, StorageError
from hookstream.settings import Settings


class SecretBox:
    """Encrypts and decrypts small secrets with a Fernet key (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "HOOKSTREAM_SECRETS_KEY must be a Fernet key (32 url-safe base64 bytes)"
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise StorageError(
                "a stored secret cannot be decrypted: is HOOKSTREAM_SECRETS_KEY the key it was "
                "stored with?"
            ) from exc


def load_secrets_key(settings: Settings) -> str:
    """The secrets key: from the settings, or, with SQLite, from (or generated into) var/."""
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
