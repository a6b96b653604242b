"""The preference page and its one-click unsubscribe (messaging.preference_page), under
/preferences/: outside the API, reached by the signed links the service's e-mails carry."""

from django.urls import path

from . import preference_page

urlpatterns = [
    path("<str:token>", preference_page.preferences_page, name="preferences"),
    path("<str:token>/unsubscribe", preference_page.unsubscribe, name="preferences-unsubscribe"),
]
