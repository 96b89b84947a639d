"""Error bodies never carry the server's file paths."""

from __future__ import annotations

import pytest

from prunekit.app.api.errors import redact_paths, status_of
from prunekit.decoding.errors import BackendError, InvalidRequestError


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("file is not a database: /srv/prunekit/data/shop.sqlite", "file is not a database: <path>/shop.sqlite"),
        ("/root/.cache/prunekit/x.gguf is not a GGUF model file", "<path>/x.gguf is not a GGUF model file"),
        ("cannot read /etc/passwd", "cannot read <path>/passwd"),
        ("see GET /v1/models", "see GET /v1/models"),
        ("backend http://localhost:8001/v1/chat failed", "backend http://localhost:8001/v1/chat failed"),
        ("3/4 of the budget; a/b relative", "3/4 of the budget; a/b relative"),
    ],
)
def test_redact_paths(message, expected):
    assert redact_paths(message) == expected


def test_status_of_redacts_every_known_error():
    assert "/home" not in status_of(InvalidRequestError("bad file /home/u/secret/db.sqlite"))[2]
    assert "/opt" not in status_of(BackendError("model at /opt/models/m.gguf crashed"))[2]
