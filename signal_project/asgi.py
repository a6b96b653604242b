import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

application = get_asgi_application()

from messaging.checks import verify_on_start  # noqa: E402

verify_on_start()
