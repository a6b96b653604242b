"""An application's SMTP relay, as the operator hands it in: checked, in its stored form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import CredentialsInvalid, credential_fields_allowed, credential_text
from adapters.email.content import plain_address
from adapters.email.pool import DEFAULT_PORTS

FIELDS = ("host", "port", "security", "username", "password", "from_address", "from_name")
SECRET_FIELDS = ("password",)


def clean_credentials(values: Mapping[str, Any], *, default_subject: str = "") -> dict[str, Any]:
    """An SMTP relay: host, port, security (starttls, tls or none), an optional username and
    password (AUTH when a username is set), and the From address (plain ASCII, as the adapter
    sends it) and name."""
    credential_fields_allowed(values, FIELDS, "Email")
    security = values.get("security", "starttls")
    if security not in DEFAULT_PORTS:
        raise CredentialsInvalid('Email "security" must be "starttls", "tls" or "none".')
    port = values.get("port", DEFAULT_PORTS[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise CredentialsInvalid('Email "port" must be a number from 1 to 65535.')
    username = credential_text(values, "username", "Email", required=False)
    password = values.get("password") or ""
    if username and not isinstance(password, str):
        raise CredentialsInvalid('Email "password" must be text.')
    if username and not password:
        raise CredentialsInvalid('Email credentials with a "username" need its "password".')
    from_address = credential_text(values, "from_address", "Email")
    if plain_address(from_address) is None:
        raise CredentialsInvalid(f'Email "from_address" {from_address!r} is not an address.')
    cleaned = {
        "host": credential_text(values, "host", "Email"),
        "port": port,
        "security": security,
        "from_address": from_address,
        "from_name": credential_text(values, "from_name", "Email", required=False),
    }
    if username:
        cleaned |= {"username": username, "password": password}
    return cleaned
