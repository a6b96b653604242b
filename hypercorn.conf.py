"""hypercorn's settings for the ASGI app: `hypercorn --config file:hypercorn.conf.py
signal_project.asgi:application ...` (hypercorn reads no file unless told). Its own lines
(start-up, errors, the access log when one is asked for) take the shape and level of every
other line (LOG_FORMAT, LOG_LEVEL; core.logging) instead of hypercorn's format."""

import sys
from pathlib import Path

import environ

# Read before the app is imported: the project on the path, `.env` read as the settings do.
_ROOT = Path(__file__).resolve().parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
environ.Env.read_env(_ROOT / ".env", overwrite=False)

from core.logging import build_logging  # noqa: E402

logconfig_dict = build_logging()
