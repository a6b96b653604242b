"""Users, subscriptions, messages and their events."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import JSONField, Q, Value
from django_fsm import FSMField, transition

from accounts.models import Application
from core.channels import SPECS, channel_choices
from core.fields import EncryptedJSONField, EncryptedTextField

from .ids import uuid7


class User(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="users")
    external_user_id = models.CharField(max_length=255)
    # string -> string, by the rules of a subscription's tags (messaging.subscription_fields);
    # campaigns target them as `user_tags` (a GIN index, migration 0019).
    tags = models.JSONField(blank=True, default=dict)
    # What the user chose to get (messaging.services.preferences checks and merges it,
    # messaging.rules keeps to it): {"channels": {TYPE: bool}, "categories": {KEY:
    # {"enabled": bool, "channels": {TYPE: bool}}}, "quiet_hours": {"start": "22:00",
    # "end": "08:00", "timezone": "Asia/Seoul"}}; unset entries left out.
    # They belong to the user, so every subscription it identifies follows them.
    preferences = models.JSONField(blank=True, default=dict, db_default=Value({}, JSONField()))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # "App users": the users of the applications, not the console's (django.contrib.auth).
        verbose_name = "app user"
        verbose_name_plural = "app users"
        constraints = [
            models.UniqueConstraint(
                fields=["application", "external_user_id"], name="user_external_id_unique"
            )
        ]

    def __str__(self) -> str:
        return self.external_user_id


# The channels' types (core.channels.SPECS): `SubscriptionType.EMAIL == "Email"`, labelled.
# Model fields take `channel_choices` instead, so that a new channel needs no migration.
SubscriptionType = models.TextChoices(
    "SubscriptionType",
    [(spec.name, (spec.type, spec.label)) for spec in SPECS.values()],
    module=__name__,
)


class Subscription(models.Model):
    # Time-ordered: an audience walked in id order reads the table in the order it was written.
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="subscriptions"
    )
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    type = models.CharField(max_length=20, choices=channel_choices)
    token = EncryptedTextField()
    # WebPush only: the browser's {"p256dh", "auth"} keys the payload is encrypted to (the
    # token is the endpoint URL). Stored as "" for every other type, so reading it costs nothing.
    keys = EncryptedJSONField(blank=True, default=dict)
    token_digest = models.CharField(max_length=64, editable=False)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=100, blank=True)
    tags = models.JSONField(blank=True, default=dict)
    language = models.CharField(max_length=16, blank=True)
    country = models.CharField(max_length=2, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    device = models.JSONField(blank=True, default=dict)
    # The preferences of a subscription that belongs to no user (an address a backend
    # registered, set on the preference page its e-mails link to); a user's subscriptions
    # follow the user's preferences instead.
    preferences = models.JSONField(blank=True, default=dict, db_default=Value({}, JSONField()))
    last_active_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["application", "type", "token_digest"], name="subscription_token_unique"
            )
        ]
        indexes = [
            # Targeting: an application's enabled subscriptions, walked in id order.
            models.Index(
                fields=["application", "id"],
                condition=Q(enabled=True),
                name="sub_app_enabled_id",
            ),
            models.Index(fields=["application", "country"], name="sub_app_country"),
            models.Index(fields=["application", "language"], name="sub_app_language"),
            models.Index(fields=["application", "last_active_at"], name="sub_app_last_active"),
            # The GIN index on tags is created by a PostgreSQL-only migration operation.
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class SubscriptionEvent(models.Model):
    class Kind(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        REREGISTERED = "reregistered"
        ENABLED = "enabled"
        DISABLED = "disabled"
        IDENTIFIED = "identified"
        LOGGED_OUT = "logged_out"
        TOKEN_CHANGED = "token_changed"  # noqa: S105 (an event name, not a secret)

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    actor = models.CharField(max_length=100, help_text="Who made the change.")
    changes = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"


class MessageStatus(models.TextChoices):
    PENDING = "pending"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    RECEIVED = "received"
    CONVERTED = "converted"
    CANCELLED = "cancelled"


class Message(models.Model):
    """One delivery of content to one subscription.

    Transitions are pure (no I/O): services run them on loaded rows and write the results in
    bulk, guarded by the status they expected.
    """

    class Priority(models.TextChoices):
        NORMAL = "normal"
        HIGH = "high"

    # Random by default; sending.message_send gives every message it makes a time-ordered
    # key (messaging.ids.uuid7) instead.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The composite indexes below lead with these keys, so no separate FK indexes. No
    # constraint in the database either: its check took a FOR KEY SHARE lock on the one
    # application row for every message inserted, from every fan-out step at once (4-5 us of
    # PostgreSQL's CPU per message, bench/RESULTS.md). Messages are made only for an
    # application that exists; deleting one deletes its messages (Django's collector).
    application = models.ForeignKey(
        Application,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    # No foreign key constraint in the database: its check locks the subscription's row (FOR
    # KEY SHARE) for every message inserted, a WAL record and a dirtied page of the large
    # subscription table per message of a campaign. Deleting a subscription still deletes its
    # messages (Django's collector); a message whose subscription went away meanwhile fails
    # when it is claimed (messaging.delivery.claim).
    subscription = models.ForeignKey(
        Subscription,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    channel = models.CharField(max_length=20, choices=channel_choices)
    # Campaigns depend on messaging, not the other way round: plain ids, no foreign keys.
    campaign_id = models.UUIDField(null=True, blank=True)
    campaign_run_id = models.UUIDField(null=True, blank=True)
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    data = models.JSONField(blank=True, default=dict)
    # The content part of this message's channel (core.channels.PART_FIELDS), rendered:
    # {"subject", "html", "from_name"} for an e-mail, {"text"} for an SMS, ...; {} for none.
    parts = models.JSONField(blank=True, default=dict)
    # The template version the content was rendered from, if any.
    template_version = models.ForeignKey(
        "templates_app.TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    ttl = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")
    collapse_id = models.CharField(max_length=64, blank=True)
    send_after = models.DateTimeField(null=True, blank=True)
    status = FSMField(default=MessageStatus.PENDING, choices=MessageStatus.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    error_permanent = models.BooleanField(null=True, blank=True)
    provider_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When work for it was last handed to the broker: the stale sweep re-enqueues what never
    # got there. (A worker sending it holds its row lock; no column records that.)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # The failed message this one sends again, by hand (message_retry). A plain id, as
    # campaign_id: the original may be deleted by retention before its retry.
    retry_of = models.UUIDField(null=True, blank=True, editable=False)
    # The category it was sent in (accounts.Category.key), "" for none: what its e-mail's
    # one-click unsubscribe turns off.
    category = models.CharField(max_length=64, blank=True, default="", db_default="")
    # The message of the previous channel in a fallback chain (services.fallback), whose
    # failure or silence this one follows. A plain id, as retry_of.
    fallback_of = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        # No index holds a column that sending changes (status, attempts, errors, provider id,
        # sent_at; enqueued_at only on a retry), not even in a condition: the update that
        # records a send is then a heap-only (HOT) update, written in place on the row's page
        # with no new index entries. The table keeps room for it (fillfactor, migration 0006).
        # The stale-pending sweep finds its candidates by time windows over enqueued_at and
        # send_after instead of an index of pending rows (delivery.pending_sweep). retry_of
        # is written once, at insert, and only retries have one: its partial index holds
        # their rows alone and costs the other inserts nothing.
        indexes = [
            models.Index(fields=["application", "-created_at"], name="msg_app_created"),
            models.Index(fields=["subscription", "-created_at"], name="msg_sub_created"),
            models.Index(fields=["campaign_id", "-created_at"], name="msg_campaign_created"),
            models.Index(fields=["enqueued_at"], name="msg_enqueued"),
            models.Index(
                fields=["send_after"],
                condition=Q(send_after__isnull=False),
                name="msg_scheduled",
            ),
            models.Index(
                fields=["retry_of"], condition=Q(retry_of__isnull=False), name="msg_retry_of"
            ),
            models.Index(
                fields=["fallback_of"],
                condition=Q(fallback_of__isnull=False),
                name="msg_fallback_of",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign_run_id", "subscription"],
                condition=Q(campaign_run_id__isnull=False),
                name="msg_one_per_run_and_subscription",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} message {self.id} ({self.status})"

    @transition(field=status, source=MessageStatus.PENDING, target=MessageStatus.SUCCESSFUL)
    def succeed(self) -> None:
        pass

    @transition(field=status, source=MessageStatus.PENDING, target=MessageStatus.FAILED)
    def fail(self) -> None:
        pass

    @transition(field=status, source=MessageStatus.PENDING, target=MessageStatus.CANCELLED)
    def cancel(self) -> None:
        pass

    @transition(field=status, source=MessageStatus.SUCCESSFUL, target=MessageStatus.RECEIVED)
    def receive(self) -> None:
        pass

    # A conversion (the user opened it) implies receipt, so it may follow `successful` too.
    @transition(
        field=status,
        source=[MessageStatus.SUCCESSFUL, MessageStatus.RECEIVED],
        target=MessageStatus.CONVERTED,
    )
    def convert(self) -> None:
        pass


class MessageEvent(models.Model):
    """One row per status transition, per send attempt and per provider report."""

    class Type(models.TextChoices):
        STATUS = "status"
        ATTEMPT = "attempt"
        REPORT = "report"  # what the provider said later (an SMS status callback)
        # Created to wait: held until the recipient's quiet hours end (details: reason, until).
        HELD = "held"

    # No constraint in the database: its deferred check ran a lookup of the message for
    # every event at commit, two per message sent (9 us of PostgreSQL's CPU per message,
    # bench/RESULTS.md). Events are written by whoever holds the message's row lock (the
    # claim, messaging.delivery), or with a new message; retention and erasure delete a
    # message's events with it.
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
        db_constraint=False,
    )
    type = models.CharField(max_length=10, choices=Type.choices)
    status = models.CharField(max_length=12, blank=True, help_text="For status events.")
    at = models.DateTimeField()
    details = models.JSONField(blank=True, default=dict)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["message", "at"], name="msgevent_message_at")]

    def __str__(self) -> str:
        return f"{self.type} {self.status} at {self.at}"


class SweepMark(models.Model):
    """How far the stale-pending sweep has looked: the upper end of its last complete window,
    per kind ("stale": enqueued_at, "due": send_after). The next window starts there, less an
    overlap for transactions that were still open. "broker": when the broker marker was last
    placed (messaging.dispatch.broker_lost_queued_tasks). "retention": when the retention
    purge's lease runs out (messaging.retention.PurgeLease)."""

    name = models.CharField(max_length=20, primary_key=True)
    position = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} swept up to {self.position}"


class InboxItem(models.Model):
    """A message delivered to an in-app inbox (an InAppMessage subscription): written by the
    delivery pipeline in the transaction that records the message `successful`. Unread:
    read_at and archived_at null; read: read_at set; archived: archived_at set."""

    # The item is its message: the item's id is the message's id.
    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="inbox_item"
    )
    # No foreign key constraints, as on Message: a constraint's check would lock the
    # subscription's row for each item a campaign writes. Django's collector still deletes
    # the items of a deleted subscription or application.
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="+", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="inbox_items", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    data = models.JSONField(blank=True, default=dict)
    # The message's in_app part ({"image_url", "action_url"}), {} for none.
    in_app = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # One inbox's page in any state, newest first, is an index range read up to the
        # page's end: each state has its own partial index, so a page never walks the items
        # of other states (tests/messaging/test_inbox_plans.py shows the plans). A new item
        # enters two (all, unread); counts never read this table (InboxCount). Deleting a
        # subscription finds its items through `all` and `archived`.
        indexes = [
            models.Index(
                fields=["subscription", "-created_at"],
                condition=Q(archived_at__isnull=True),
                name="inbox_sub_all",
            ),
            models.Index(
                fields=["subscription", "-created_at"],
                condition=Q(read_at__isnull=True, archived_at__isnull=True),
                name="inbox_sub_unread",
            ),
            models.Index(
                fields=["subscription", "-created_at"],
                condition=Q(read_at__isnull=False, archived_at__isnull=True),
                name="inbox_sub_read",
            ),
            models.Index(
                fields=["subscription", "-created_at"],
                condition=Q(archived_at__isnull=False),
                name="inbox_sub_archived",
            ),
        ]

    def __str__(self) -> str:
        return f"inbox item {self.message_id}"


class InboxCount(models.Model):
    """One inbox's counts, moved in the same transaction as its items: `unread`, and `total`
    (every item not archived). What `GET /inbox/count` reads, so a count is one row."""

    subscription = models.OneToOneField(
        Subscription, on_delete=models.CASCADE, primary_key=True, related_name="inbox_count"
    )
    unread = models.IntegerField(default=0)
    total = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.unread}/{self.total} in inbox {self.subscription_id}"


class DeliveryRollup(models.Model):
    """What sending did in one minute, per application, channel and writer slot: counters
    and a histogram of provider latency, added to by each delivery batch in the
    transaction that records it (messaging.delivery.rollups). The operators'
    console reads these rows, never the messages.

    `shard` is the writing process's slot: two worker processes add to different rows, so no
    row serialises sending; readers sum over it."""

    minute = models.DateTimeField()
    # No constraint (its check would lock the application's row on every batch), no cascade
    # (the purge removes an application's rows with everyone's after ROLLUP_RETENTION_DAYS).
    application = models.ForeignKey(
        Application, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    channel = models.CharField(max_length=20, choices=channel_choices)
    shard = models.PositiveSmallIntegerField()
    sent = models.BigIntegerField(default=0, help_text="Send attempts.")
    successful = models.BigIntegerField(default=0)
    failed_permanent = models.BigIntegerField(
        default=0, help_text="Messages that became failed (given up, or a permanent error)."
    )
    failed_temporary = models.BigIntegerField(
        default=0, help_text="Attempts that failed temporarily; the message is retried."
    )
    # Counts of attempts per provider latency bucket (messaging.delivery.rollups.BOUNDS_MS).
    latency = ArrayField(models.BigIntegerField(), default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "application", "channel", "shard"], name="delivery_rollup_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} at {self.minute:%Y-%m-%d %H:%M} (slot {self.shard})"


class ErrorRollup(models.Model):
    """How often each provider error code came back in one minute, per application, channel
    and writer slot; written by the same statement as DeliveryRollup."""

    minute = models.DateTimeField()
    application = models.ForeignKey(
        Application, on_delete=models.DO_NOTHING, related_name="+", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    channel = models.CharField(max_length=20, choices=channel_choices)
    error_code = models.CharField(max_length=64)
    shard = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "application", "channel", "error_code", "shard"],
                name="error_rollup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.error_code} on {self.channel} at {self.minute:%Y-%m-%d %H:%M}"


class FrequencyWindow(models.Model):
    """One recipient's sends counted by the application's frequency cap (messaging.rules):
    the times of its capped messages within the longest window still relevant. The
    recipient is the user, or a subscription that belongs to none. One row per recipient, so
    concurrent batches serialise only where they share a recipient (its row lock), never on
    an application-wide row."""

    recipient = models.UUIDField(primary_key=True)
    # No constraint, as on Message: its check would lock the application's row per batch.
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    sent = ArrayField(models.DateTimeField(), default=list)
    # How many the last batch that counted this recipient was granted (the statement that
    # grants returns it).
    granted = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{len(self.sent)} capped sends of {self.recipient}"


class FallbackChain(models.Model):
    """One send across channels in turn (POST /messages with `fallback`): the user's
    subscriptions of one type of `order` at a time, the next type when the current hop's
    messages failed or none was received within `after_seconds`, until one is received
    (messaging.services.fallback). Stored state that beat's tick advances, never a task that
    sleeps: a crash or a broker restart loses nothing of it."""

    class Status(models.TextChoices):
        OPEN = "open"  # a hop is out: waiting for its receipt, its failure or its deadline
        RECEIVED = "received"  # a hop's message was received (or converted): the chain ends
        EXHAUSTED = "exhausted"  # no type left to try, and nothing was received
        STOPPED = "stopped"  # the next hop could not be made (`reason`)

    # Time-ordered, as messages' keys: new chains append to the key's index.
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # The retention purge finds closed chains through fallback_closed, which leads with it.
    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # Erasing the user deletes its chains (services.erasure) before the user's row.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="fallback_chains")
    order = models.JSONField(help_text="The subscription types to try, in turn.")
    position = models.PositiveSmallIntegerField(
        default=0, help_text="The index in `order` of the current hop's type."
    )
    after_seconds = models.PositiveIntegerField()
    # What every hop sends: literal content (each hop keeps its own channel's part), or a
    # template version rendered for each hop's subscriptions (their language, or `language`).
    title = models.TextField(blank=True)
    body = models.TextField(blank=True)
    data = models.JSONField(blank=True, default=dict)
    parts = models.JSONField(blank=True, default=dict)
    template_version = models.ForeignKey(
        "templates_app.TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    variables = models.JSONField(blank=True, default=dict)
    language = models.CharField(max_length=16, blank=True)
    # The send's category (accounts.Category.key, "" for none): the recipient's rules apply
    # to every hop.
    category = models.CharField(max_length=64, blank=True)
    priority = models.CharField(
        max_length=10, choices=Message.Priority.choices, default=Message.Priority.NORMAL
    )
    ttl = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")
    collapse_id = models.CharField(max_length=64, blank=True)
    # The current hop's messages (ids as text).
    message_ids = models.JSONField(blank=True, default=list)
    # Every type tried, in turn: {"channel", "messages": [ids], "at", "ended": null (the
    # current hop) | "received" | "failed" | "not_received" | "left_out" (the rules left
    # every target out) | "content_invalid" | "cancelled" | "stopped"}. A GIN index
    # (jsonb_path_ops, migration 0021) finds the chain of a message.
    hops = models.JSONField(blank=True, default=list)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    reason = models.CharField(max_length=64, blank=True, help_text="Why it stopped.")
    deadline_at = models.DateTimeField(
        null=True, blank=True, help_text="The current hop's: not received by then, the next."
    )
    due_at = models.DateTimeField(
        null=True, blank=True, help_text="When the tick looks at it next (open chains)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The tick's read: open chains whose time has come, soonest first. Closed chains
            # leave the index.
            models.Index(fields=["due_at"], condition=Q(status="open"), name="fallback_due"),
            # The retention purge: an application's chains closed before its cutoff.
            models.Index(
                fields=["application", "closed_at"],
                condition=Q(closed_at__isnull=False),
                name="fallback_closed",
            ),
        ]

    def __str__(self) -> str:
        return f"fallback {' > '.join(self.order)} ({self.status})"

    @property
    def channel(self) -> str:
        """The current hop's type."""
        return self.order[self.position]
