from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from messaging import inbox_demo, webhooks
from messaging.inbox import stream as inbox_stream

_public = {"authentication_classes": [], "permission_classes": [], "throttle_classes": []}

api_v1 = [
    # Served by the ASGI app only (signal_project.asgi); here, an error that says so.
    path("inbox/stream", inbox_stream.wsgi_answer, name="inbox-stream"),
    path("", include("accounts.api.urls")),
    path("", include("messaging.api.urls")),
    path("", include("templates_app.api.urls")),
    path("", include("campaigns.api.urls")),
    path("schema/", SpectacularAPIView.as_view(**_public), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema", **_public), name="docs"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # Called by outsiders without an API key, each checked by its own signature.
    path(
        "webhooks/sms/<uuid:message_id>", webhooks.sms_status_callback, name="sms-status-callback"
    ),
    path("unsubscribe/<str:token>", webhooks.unsubscribe, name="unsubscribe"),
    # The recipients' preference page and one-click unsubscribe, by a signed token in the URL.
    path("preferences/", include("messaging.preference_urls")),
    # /healthz, /readyz, /metrics: no API key, no throttling (operations/views.py).
    path("", include("operations.urls")),
]

# The reference inbox client, in development only (DEBUG or INBOX_DEMO; the view checks again).
if inbox_demo.enabled():
    urlpatterns.append(path("inbox-demo/", inbox_demo.inbox_demo, name="inbox-demo"))

handler500 = "signal_project.views.server_error"
