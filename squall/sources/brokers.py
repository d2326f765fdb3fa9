"""Self-hosted brokers by name (``event_source_brokers``) and their credentials by secret ARN
(``event_source_secrets``), as a mapping's EventSourceArn and SourceAccessConfigurations name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from squall.errors import InvalidParameterValue


@dataclass(frozen=True)
class Brokers:
    urls: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # secret name → (user, password)

    def url(self, name: str | None) -> str:
        if not name or name not in self.urls:
            known = ", ".join(sorted(self.urls)) or "none"
            raise InvalidParameterValue(
                f"No broker named {name!r} is configured (configured: {known}). Add it to the event_source_brokers "
                "setting (squall.toml [event_source_brokers], or SQUALL_EVENT_SOURCE_BROKERS as JSON).")
        return self.urls[name]

    def credentials(self, secret_arn: str | None) -> tuple[str, str] | None:
        """The user and password a BASIC_AUTH secret ARN names (…:secret:<name>), or None."""
        if not secret_arn:
            return None
        name = secret_arn.rsplit(":secret:", 1)[-1]
        if name not in self.secrets:
            raise InvalidParameterValue(
                f"The secret {secret_arn} is not configured: add {name!r} to the event_source_secrets setting "
                "({\"username\": ..., \"password\": ...}).")
        return self.secrets[name]
