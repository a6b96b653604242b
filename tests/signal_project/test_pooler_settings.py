"""DB_TRANSACTION_POOLER: behind a pooler in transaction mode nothing of a connection's state
may outlive its transaction, so the settings turn off what would (read in a fresh process, as
settings are read once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRINT = (
    "import django, json; django.setup(); from django.conf import settings;"
    "d = settings.DATABASES['default'];"
    "print(json.dumps({'options': d['OPTIONS'],"
    " 'no_server_cursors': d.get('DISABLE_SERVER_SIDE_CURSORS', False)}))"
)


def database_settings(**env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PRINT],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "signal_project.settings",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:6432/signal",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_behind_a_transaction_pooler_nothing_outlives_a_transaction():
    pooled = database_settings(DB_TRANSACTION_POOLER="true", DB_SERVER_SIDE_BINDING="true")
    assert pooled["options"]["server_side_binding"] is False
    assert pooled["no_server_cursors"] is True
    assert "options" not in pooled["options"]  # PgBouncer refuses the startup parameter
    assert not pooled["options"].get("prepare_threshold")


def test_without_a_pooler_the_direct_connection_keeps_its_settings():
    direct = database_settings(DB_TRANSACTION_POOLER="false")
    assert direct["options"]["server_side_binding"] is True
    assert direct["no_server_cursors"] is False
    assert "idle_in_transaction_session_timeout=300000" in direct["options"]["options"]
