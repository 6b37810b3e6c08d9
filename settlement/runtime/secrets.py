"""Where secret settings come from, and how they are kept out of logs.

Two supported ways, both documented in the README:
1. Platform Key Vault references: the app setting holds `@Microsoft.KeyVault(SecretUri=…)` and the
   Functions platform resolves it through the app's managed identity before our code runs. This is the only
   way for the settings the Kafka *trigger* reads (the host, not our code, opens that connection).
2. Our own read: when `KEY_VAULT_URL` is set, a secret setting absent from the app settings is read from
   that vault with `DefaultAzureCredential` (managed identity in Azure, developer login locally), once per
   process. The secret's name defaults to the setting's name in kebab case (`KAFKA_SASL_PASSWORD` →
   `kafka-sasl-password`) and can be overridden with `<SETTING>_SECRET_NAME`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol


class Secret:
    """A string that prints as *** so it cannot leak through repr(), f-strings or logged dataclasses."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretSource(Protocol):
    """Anything that can fetch a secret by name (the vault, or a dict in tests)."""

    def get(self, name: str) -> str: ...


class SecretNotFound(LookupError):
    """The vault has no secret by that name."""


def secret_name_for(setting: str, env: Mapping[str, str]) -> str:
    return env.get(f"{setting}_SECRET_NAME") or setting.lower().replace("_", "-")


class KeyVaultSecrets:
    """Reads secrets from Azure Key Vault once each and caches them for the life of the process."""

    def __init__(self, vault_url: str) -> None:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient

        self._client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str:
        with self._lock:
            if name not in self._cache:
                from azure.core.exceptions import ResourceNotFoundError

                try:
                    value = self._client.get_secret(name).value
                except ResourceNotFoundError:
                    raise SecretNotFound(name) from None
                if value is None:
                    raise SecretNotFound(name)
                self._cache[name] = value
            return self._cache[name]
