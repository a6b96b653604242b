"""The ASGI app (`signal_project.asgi:application`, e.g. under hypercorn): the same API as the
WSGI app, and also `GET /api/v1/inbox/stream` (messaging.inbox.stream), which only an ASGI
process serves: an open stream is a coroutine here, where under WSGI it would hold a worker.
A reverse proxy sends that path here with buffering off (docs/channels.md, "The live stream:
the ASGI processes, behind a proxy")."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

django_application = get_asgi_application()

from core.middleware import asgi_request_id  # noqa: E402
from messaging.checks import verify_on_start  # noqa: E402
from messaging.inbox import stream  # noqa: E402

verify_on_start()
# The stream's lines carry a request id as the Django views' do (core.middleware).
stream_application = asgi_request_id(stream.stream)


async def lifespan(receive, send) -> None:
    """Django's ASGI handler has no lifespan; on shutdown the open streams end cleanly
    (their clients reconnect with Last-Event-ID) and the pub/sub connection closes."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await stream.hub_close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"] == stream.PATH:
        await stream_application(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await django_application(scope, receive, send)
