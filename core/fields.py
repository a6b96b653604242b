"""Model fields whose values are encrypted at rest."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from core import crypto


class EncryptedField:
    """What every encrypted field is: its column holds Fernet tokens (core.crypto) as text,
    or "" for an empty value. `rotate_encryption_keys` and the start-up check (core.encryption)
    find the encrypted columns of every model by this class, so a new encrypted field class
    derives from it."""


class _StoredAsText(EncryptedField):
    """Migrations see a plain TextField: encryption is not part of the schema, and
    migrations must not import app code."""

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs


class EncryptedTextField(_StoredAsText, models.TextField):
    """A text value stored as a Fernet token; reads decrypt, and a bad key raises."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(value)


class EncryptedJSONField(_StoredAsText, models.TextField):
    """A JSON object stored encrypted; `{}` when empty."""

    def from_db_value(self, value, expression, connection) -> dict[str, Any]:
        if not value:
            return {}
        return json.loads(crypto.decrypt(value))

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        try:
            value = json.loads(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError("Enter a JSON object.", code="invalid") from exc
        if not isinstance(value, dict):
            raise ValidationError("Enter a JSON object.", code="invalid")
        return value

    def formfield(self, **kwargs):
        # Edited as JSON (not as the dict's Python repr, which would not parse back).
        return super().formfield(**{"form_class": forms.JSONField, **kwargs})

    def get_prep_value(self, value):
        if not value:
            return ""
        return crypto.encrypt(json.dumps(value, sort_keys=True))

    def value_to_string(self, obj):
        return json.dumps(self.value_from_object(obj))
