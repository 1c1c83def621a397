"""The embedded broker never lets a worker read half a message (config/broker_files.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import filesystem
from kombu.utils import json as kombu_json

from config import broker_files
from config.celery import app


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Any]:
    for name in ("queue", "processed", "control"):
        (tmp_path / name).mkdir()
    return {
        "data_folder_in": str(tmp_path / "queue"),
        "data_folder_out": str(tmp_path / "queue"),
        "processed_folder": str(tmp_path / "processed"),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
    }


def _channel(transport: str, folders: dict[str, Any]) -> Iterator[Any]:
    with Connection(
        "filesystem://", transport=transport, transport_options=folders
    ) as connection:
        yield connection.default_channel


def _read_while_writing(channel: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Put one message, and read the queue at the moment its body is being encoded."""
    seen: list[object] = []
    encode = kombu_json.dumps

    def encode_and_peek(payload: Any) -> str:
        try:
            seen.append(channel._get("celery"))
        except Empty:
            seen.append("empty")
        except json.JSONDecodeError as exc:
            seen.append(exc)
        return str(encode(payload))

    monkeypatch.setattr(filesystem, "dumps", encode_and_peek, raising=True)
    monkeypatch.setattr(kombu_json, "dumps", encode_and_peek)
    channel._put("celery", {"body": "x" * 10_000})
    return seen


def test_kombus_own_transport_shows_a_reader_the_file_before_it_is_written(
    folders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure the embedded default had: the reader takes the empty file and cannot decode it."""
    for channel in _channel("filesystem", folders):
        (seen,) = _read_while_writing(channel, monkeypatch)
        assert isinstance(seen, json.JSONDecodeError)


def test_the_embedded_broker_shows_a_reader_nothing_until_the_message_is_whole(
    folders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for channel in _channel("config.broker_files:Transport", folders):
        assert _read_while_writing(channel, monkeypatch) == ["empty"]
        assert channel._get("celery") == {"body": "x" * 10_000}
        with pytest.raises(Empty):
            channel._get("celery")
        assert list(Path(folders["data_folder_in"]).iterdir()) == []


def test_the_embedded_default_uses_it(settings: Any) -> None:
    if settings.CELERY_BROKER_URL != "filesystem://":
        pytest.skip("runs on the embedded default")
    assert settings.CELERY_BROKER_TRANSPORT == "config.broker_files:Transport"
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, broker_files.Transport)
