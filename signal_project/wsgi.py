import io
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")


class ChunkedBodies:
    """Lets Django see a `Transfer-Encoding: chunked` request body.

    gunicorn decodes the chunks and marks the input as ending by itself
    (`wsgi.input_terminated`), but Django reads only CONTENT_LENGTH bytes of it, so without a
    Content-Length such a body looked empty. Reads at most API_MAX_BODY_BYTES + 1 bytes and
    sets CONTENT_LENGTH to what it read: a longer body then gets the usual 413."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if (
            environ.get("wsgi.input_terminated")
            and not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            body = environ["wsgi.input"].read(settings.API_MAX_BODY_BYTES + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


application = ChunkedBodies(get_wsgi_application())

from messaging.checks import verify_on_start  # noqa: E402

verify_on_start()
