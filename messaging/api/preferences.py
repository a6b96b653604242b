"""`GET/PUT /users/{external_user_id}/preferences`: server keys, and client keys of an
application with identity verification on, carrying the user's X-User-Hash. Parse, call one
service or selector, reply."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.auth import IsServerKeyOrClientKeyUnderIdentity
from accounts.identity import HEADER as USER_HASH_HEADER
from accounts.identity import identity_verify
from accounts.services import actor_of

from ..selectors.preferences import user_preferences_get
from ..services.preferences import user_preferences_update
from .serializers.preferences import PreferencesInput, PreferencesOutput, preferences_json
from .users import BAD_EXTERNAL_ID, IDENTITY_REFUSED, NO_SUCH_USER, _external_user_id


def _verified(request: Request, external_user_id: str) -> str:
    """The external id of the path, checked; a client key must prove it acts for that user."""
    external_user_id = _external_user_id(external_user_id)
    identity_verify(
        api_key=request.auth,
        external_user_id=external_user_id,
        given=request.META.get(USER_HASH_HEADER),
    )
    return external_user_id


class UserPreferencesApi(APIView):
    permission_classes = [IsServerKeyOrClientKeyUnderIdentity]

    @extend_schema(
        operation_id="users_preferences_retrieve",
        responses={
            200: PreferencesOutput,
            400: BAD_EXTERNAL_ID,
            401: IDENTITY_REFUSED,
            404: NO_SUCH_USER,
        },
        description="What the user chose to get: channels, categories (each on or off, and per "
        "channel) and quiet hours. Messages of a category keep to them (unless the category "
        "is required).",
    )
    def get(self, request: Request, external_user_id: str) -> Response:
        preferences = user_preferences_get(
            application=request.auth.application,
            external_user_id=_verified(request, external_user_id),
        )
        return Response(PreferencesOutput(preferences_json(preferences)).data)

    @extend_schema(
        operation_id="users_preferences_update",
        request=PreferencesInput,
        responses={200: PreferencesOutput, 400: BAD_EXTERNAL_ID, 401: IDENTITY_REFUSED},
        description="Merges the parts given into the user's preferences (creating the user if "
        "the application has none with this external id yet): each channel and category entry "
        "given is set, null removes an entry, a part, or the quiet hours. Answers with the "
        "preferences as stored.",
    )
    def put(self, request: Request, external_user_id: str) -> Response:
        external_user_id = _verified(request, external_user_id)
        data = PreferencesInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_preferences_update(
            application=request.auth.application,
            external_user_id=external_user_id,
            changes=data.validated_data,
            actor=actor_of(request.auth),
        )
        return Response(PreferencesOutput(preferences_json(user.preferences)).data)
