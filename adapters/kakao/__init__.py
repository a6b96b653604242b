"""KakaoTalk AlimTalk through NHN Cloud's Bizmessage API v2.3: errors (the dealer's codes),
content (what a message is on KakaoTalk, and its SMS fallback), credentials, wire (the request
and record formats) and adapter (the I/O)."""

from adapters.base import CredentialsInvalid
from adapters.kakao.adapter import DEFAULT_ENDPOINT, KakaoAdapter, KakaoDealerError
from adapters.kakao.content import content_of
from adapters.kakao.credentials import clean_credentials
from adapters.kakao.errors import KAKAO_ERRORS

__all__ = [
    "DEFAULT_ENDPOINT",
    "KAKAO_ERRORS",
    "CredentialsInvalid",
    "KakaoAdapter",
    "KakaoDealerError",
    "clean_credentials",
    "content_of",
]
