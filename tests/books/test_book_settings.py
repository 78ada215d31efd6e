"""The books' storage settings fail closed: a bad value stops every command, naming the setting."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import manage, subprocess_env


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("BOOK_DEPTH_LEVELS", "0", "BOOK_DEPTH_LEVELS: must be 1..5000, got 0"),
        ("BOOK_DEPTH_LEVELS", "many", "BOOK_DEPTH_LEVELS: invalid value 'many'"),
        ("BOOK_STORE_EVERY_S", "7", "BOOK_STORE_EVERY_S: must divide a day (1..86400), got 7"),
        ("BOOK_RETENTION_DAYS", "0", "BOOK_RETENTION_DAYS: must be at least 1, got 0"),
        ("KAFKA_BOOKS_CONSUMER_GROUP", "", "KAFKA_BOOKS_CONSUMER_GROUP: must not be empty"),
    ],
)
def test_a_bad_books_setting_stops_consume_books_naming_it(name: str, value: str, message: str) -> None:
    done = subprocess.run(
        manage("consume_books", "--max-records", "1"),
        env=subprocess_env(**{name: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert message in done.stderr
