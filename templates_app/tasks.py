"""Celery tasks of templates: thin interfaces that call the services."""

from __future__ import annotations

from celery import shared_task

from .kakao import kakao_templates_sync_all


@shared_task(name="templates_app.sync_kakao_templates")
def sync_kakao_templates() -> dict[str, str]:
    """Reads the dealer's AlimTalk template list of every application with KakaoTalk
    credentials (beat, every few minutes)."""
    return kakao_templates_sync_all()
