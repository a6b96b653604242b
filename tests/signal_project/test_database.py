"""An unreachable database is a 503 with Retry-After (the API's error shape under /api/, a plain
page for the admin), told apart from errors of statements, which stay 500s."""

from __future__ import annotations

import socket

import pytest
from django.contrib.auth import get_user_model
from django.db import DataError, OperationalError, connection
from django.test import Client

from core.db import database_unavailable


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unreachable_database(transactional_db):
    """The connection's next attempt goes to a port nothing listens on."""
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = closed_port()
    yield
    connection.close()
    connection.settings_dict["PORT"] = original


@pytest.fixture
def logged_in_admin(transactional_db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-for-tests")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def test_the_admin_answers_503_while_the_database_is_unreachable(
    logged_in_admin, unreachable_database
):
    response = logged_in_admin.get("/admin/messaging/subscription/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/plain")
    assert b"Service Unavailable" in response.content


def test_the_api_answers_503_in_the_error_shape_while_the_database_is_unreachable(
    unreachable_database,
):
    response = Client(raise_request_exception=False).get(
        "/api/v1/messages", HTTP_X_API_KEY="sk_anything"
    )

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "service_unavailable"


def test_a_refused_connection_is_unavailable_a_bad_statement_is_not(transactional_db):
    with connection.cursor() as cursor, pytest.raises(DataError) as bad_value:
        cursor.execute("SELECT 'x'::int")
    assert not database_unavailable(bad_value.value)

    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = closed_port()
    try:
        with pytest.raises(OperationalError) as refused:
            connection.ensure_connection()
    finally:
        connection.settings_dict["PORT"] = original
        connection.close()
    assert database_unavailable(refused.value)
