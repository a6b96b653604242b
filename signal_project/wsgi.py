import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")

application = get_wsgi_application()

from messaging.checks import verify_on_start  # noqa: E402

verify_on_start()
