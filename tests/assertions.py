"""Assertions on the REST contract shared by the API tests."""

from __future__ import annotations

import json


def assert_error(response, status: int, code: str) -> dict:
    """The response is `status` with exactly the contract's error shape and `code`; returns
    the details."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    assert isinstance(error["details"], dict), error
    return error["details"]
