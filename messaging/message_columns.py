"""The columns of a message that the delivery hot path reads and writes with SQL of its own,
one declaration per statement family. The statements' text and their rows' shape are built
from these names, so a new column of Message is its field, its migration and a name here.

Names are the model's attribute names (`application_id`, not `application`)."""

# Every column of a new message, in the order of the rows sending.message_send inserts (one
# INSERT for a few messages, COPY for many; campaign fan-out steps too).
INSERTED = (
    "id", "application_id", "subscription_id", "channel", "campaign_id", "campaign_run_id",
    "title", "body", "data", "parts", "template_version_id", "priority", "ttl", "collapse_id",
    "send_after", "status", "attempts", "error_code", "error_message", "error_permanent",
    "provider_id", "created_at", "sent_at", "enqueued_at", "category", "fallback_of",
)  # fmt: skip

# What the claim (delivery.claim.claim_batch) reads of a pending message; the leading fields
# of delivery.claim.Outgoing, in this order.
CLAIMED = (
    "id", "application_id", "subscription_id", "channel", "campaign_run_id", "title", "body",
    "data", "parts", "priority", "ttl", "collapse_id", "attempts", "enqueued_at", "category",
)  # fmt: skip

# What the claim reads of the message's subscription, as (column, Outgoing field); they follow
# CLAIMED in Outgoing.
CLAIMED_FROM_SUBSCRIPTION = (
    ("token", "token"),
    ("enabled", "subscription_enabled"),
    ("keys", "keys"),
    # Whose preferences an e-mail's one-click unsubscribe changes (messaging.links).
    ("user_id", "user_id"),
)

# What recording a batch's results (delivery.record.write_messages) changes, in one UPDATE
# by id.
WRITTEN = (
    "status", "attempts", "error_code", "error_message", "error_permanent", "provider_id",
    "sent_at", "enqueued_at",
)  # fmt: skip

# The MessageEvent rows recording a batch's results inserts.
EVENT_COLUMNS = ("message_id", "type", "status", "at", "details")
