"""An inbox item and a count as the API shows them, and as their events carry them: one
definition, so a streamed item is byte for byte the listed one."""

from __future__ import annotations

from datetime import UTC, datetime

ITEM_FIELDS = ("id", "title", "body", "data", "in_app", "created_at", "read_at", "archived_at")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, `Z` for +00:00: what the API's other timestamps look like."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def item_json(item) -> dict:
    """An InboxItem (or any object with its attributes) as the API shows it."""
    return {
        "id": str(item.message_id),
        "title": item.title,
        "body": item.body,
        "data": item.data,
        "in_app": item.in_app,
        "created_at": iso(item.created_at),
        "read_at": iso(item.read_at),
        "archived_at": iso(item.archived_at),
    }


def count_json(unread: int, total: int) -> dict:
    return {"unread": unread, "total": total}
