"""Campaign data made through the real services: templates, subscriptions, campaigns, and a
fan-out driven in-process (no worker here)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask

from campaigns import services
from campaigns.models import Campaign, CampaignRun
from messaging.models import Message, MessageStatus
from messaging.signals import message_statuses_changed
from templates_app import services as template_services
from templates_app.models import TemplateVersion
from templates_app.rendering import compiled_cache


def template_create(application, **overrides) -> TemplateVersion:
    """A Korean template with an English translation and three variables."""
    fields = {
        "name": "event-start",
        "title_template": "안녕 {{user_name}}",
        "body_template": "{{event_name}} 시작",
        "data_template": {"event_id": "{{event_id}}"},
        "translations": {
            "en": {"title_template": "Hello {{user_name}}", "body_template": "{{event_name}}!"}
        },
        "default_language": "ko",
    }
    fields.update(overrides)
    return template_services.template_create(application=application, **fields)


def campaign_create(application, **fields) -> Campaign:
    fields.setdefault("name", "summer-sale")
    if "template" not in fields:
        fields.setdefault("title", "Sale")
        fields.setdefault("body", "Everything half price")
    return services.campaign_create(application=application, **fields)


def beat_rows() -> tuple[int, int, int]:
    return (
        PeriodicTask.objects.count(),
        CrontabSchedule.objects.count(),
        ClockedSchedule.objects.count(),
    )


def in_an_hour():
    return timezone.now() + timedelta(hours=1)


def fanout(run_id) -> int:
    """Runs the fan-out steps a worker would, until none remain; returns how many ran."""
    steps = 1
    while services.run_fanout_step(run_id=run_id):
        steps += 1
    return steps


def run_messages(run: CampaignRun):
    return Message.objects.filter(campaign_run_id=run.pk).order_by("pk")


def messages_succeed(messages) -> None:
    """What delivery does for an accepted batch: pending -> successful, and the signal."""
    transitions: Counter = Counter()
    for message in messages:
        message.succeed()
        message.save(update_fields=["status"])
        transitions[(message.campaign_run_id, MessageStatus.PENDING, MessageStatus.SUCCESSFUL)] += 1
    message_statuses_changed.send(sender=Message, transitions=transitions)


@pytest.fixture(autouse=True)
def _empty_compiled_cache():
    compiled_cache.clear()
    yield
    compiled_cache.clear()
