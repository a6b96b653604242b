"""KakaoTalk templates as the dealer's list would give them, stored as a sync stores them."""

from __future__ import annotations

from django.utils import timezone

from templates_app.kakao import kakao_variables_of
from templates_app.models import KakaoTemplate


def kakao_template_add(
    application, code: str, text: str = "", *, buttons=(), status: str = "TSC03", name: str = ""
) -> KakaoTemplate:
    """An approved (by default) KakaoTalk template of the application, `#{variables}` read
    from its text."""
    return KakaoTemplate.objects.create(
        application=application,
        template_code=code,
        name=name or code.lower(),
        text=text,
        variables=kakao_variables_of(text),
        buttons=list(buttons),
        status=status,
        synced_at=timezone.now(),
    )
