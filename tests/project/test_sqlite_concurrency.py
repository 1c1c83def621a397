"""The embedded default's SQLite options let the web process, a worker and beat share one file.

Each rule is shown twice: with the options config/settings.py applies, and with SQLite's own behaviour,
where the same sequence is refused. Both run on files of their own, whatever database the suite uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper

from config.settings import SQLITE_OPTIONS

# What Django gives SQLite with no options but the timeout: a rollback journal, DEFERRED transactions.
ROLLBACK_JOURNAL: dict[str, Any] = {"timeout": SQLITE_OPTIONS["timeout"]}
DEFERRED = {**SQLITE_OPTIONS, "transaction_mode": "DEFERRED"}


def _wrapper(path: Path, options: dict[str, Any], alias: str) -> DatabaseWrapper:
    return DatabaseWrapper(
        {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": options,
            "ATOMIC_REQUESTS": False,
            "AUTOCOMMIT": True,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "TIME_ZONE": None,
            "USER": "",
            "PASSWORD": "",
            "HOST": "",
            "PORT": "",
            "TEST": {},
        },
        alias,
    )


class Pair:
    """Two processes' connections to one file: `web` in the test's thread, `worker` in a thread of its own."""

    def __init__(self, path: Path, options: dict[str, Any]) -> None:
        self.path, self.options = path, options
        self.threads: list[threading.Thread] = []
        self.web = _wrapper(path, options, "web")
        connections["web"] = self.web
        with self.web.cursor() as cursor:
            cursor.execute("CREATE TABLE job (id INTEGER PRIMARY KEY, status TEXT)")
            cursor.execute("INSERT INTO job (status) VALUES ('queued')")

    def status(self) -> str:
        with self.web.cursor() as cursor:
            cursor.execute("SELECT status FROM job")
            return str(cursor.fetchone()[0])

    def in_worker(self, work: Any) -> list[BaseException]:
        """Run `work(cursor)` on the worker's connection in its thread; what it raised is returned."""
        raised: list[BaseException] = []

        def run() -> None:
            connections["worker"] = worker = _wrapper(self.path, self.options, "worker")
            try:
                work(worker)
            except BaseException as error:  # noqa: BLE001 - handed to the test
                raised.append(error)
            finally:
                worker.close()

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)
        return raised


@pytest.fixture
def pair(tmp_path: Path, django_db_blocker: Any) -> Iterator[Any]:
    made: list[Pair] = []

    def make(options: dict[str, Any]) -> Pair:
        made.append(Pair(tmp_path / f"db-{len(made)}.sqlite3", options))
        return made[-1]

    with django_db_blocker.unblock():
        yield make
        for each in made:
            for thread in each.threads:
                thread.join(30)
            each.web.close()
            del connections["web"]


def _worker_commits_an_update(worker: DatabaseWrapper) -> None:
    with worker.cursor() as cursor:
        cursor.execute(
            "UPDATE job SET status = 'submitted'"
        )  # autocommit: it commits here


def test_a_reader_part_way_through_does_not_hold_back_a_writers_commit(
    pair: Any,
) -> None:
    db = pair({**SQLITE_OPTIONS, "timeout": 1})
    with db.web.cursor() as reader:
        reader.execute("BEGIN")
        reader.execute(
            "SELECT status FROM job"
        )  # a long read: its snapshot is held until it ends
        raised = db.in_worker(_worker_commits_an_update)
        db.threads[-1].join(30)
        reader.execute("ROLLBACK")
    assert raised == []
    assert db.status() == "submitted"


def test_with_a_rollback_journal_the_same_commit_is_refused(pair: Any) -> None:
    db = pair({**ROLLBACK_JOURNAL, "timeout": 1})
    with db.web.cursor() as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT status FROM job")
        raised = db.in_worker(_worker_commits_an_update)
        db.threads[-1].join(30)
        reader.execute("ROLLBACK")
    assert [str(error) for error in raised] == ["database is locked"]
    assert db.status() == "queued"


def _read_then_write_while_the_worker_writes(db: Pair) -> None:
    started = threading.Event()

    def hold_the_write_lock(worker: DatabaseWrapper) -> None:
        with transaction.atomic(using="worker"):
            with worker.cursor() as cursor:
                cursor.execute("UPDATE job SET status = 'polled'")
            started.set()
            time.sleep(0.5)

    db.in_worker(hold_the_write_lock)
    assert started.wait(10)
    with transaction.atomic(using="web"), db.web.cursor() as cursor:
        cursor.execute("SELECT status FROM job")
        cursor.fetchall()
        cursor.execute("UPDATE job SET status = 'cancelled'")


def test_a_transaction_that_reads_then_writes_waits_for_the_other_writer(
    pair: Any,
) -> None:
    db = pair(SQLITE_OPTIONS)
    _read_then_write_while_the_worker_writes(db)
    assert db.status() == "cancelled"


def test_in_deferred_mode_the_same_transaction_is_refused(pair: Any) -> None:
    db = pair(DEFERRED)
    with pytest.raises(OperationalError, match="database is locked"):
        _read_then_write_while_the_worker_writes(db)
    db.threads[-1].join(30)
    assert db.status() == "polled"
