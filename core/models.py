"""What core stores itself: the first response to each Idempotency-Key."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class IdempotencyRecord(models.Model):
    """The first response to a request with an Idempotency-Key, replayed for 24 hours."""

    # Whose key it is (an application's id). No foreign key: core sits below the apps that
    # own keys; records outlive nothing for long (24 h, then the purge task deletes them).
    owner_id = models.UUIDField(db_column="application_id")
    endpoint = models.CharField(max_length=50)
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner_id", "endpoint", "key"], name="idempotency_key_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.key}"
