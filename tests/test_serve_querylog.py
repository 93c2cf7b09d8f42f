"""The query log never appends to or rotates over a file rgaudit did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rgaudit.errors import OutputExistsError
from rgaudit.serve.querylog import QueryLog


def test_query_log_refuses_a_users_file_and_its_rotation_siblings(tmp_path: Path) -> None:
    user = tmp_path / "notes.txt"
    user.write_text("my notes\n")
    with pytest.raises(OutputExistsError, match="not an rgaudit query log"):
        QueryLog(user, max_bytes=1000, backups=2)
    log = tmp_path / "q.jsonl"
    (tmp_path / "q.jsonl.2").write_text("someone else's\n")      # rotation would replace it
    with pytest.raises(OutputExistsError, match=r"q\.jsonl\.2"):
        QueryLog(log, max_bytes=1000, backups=2)
    assert (tmp_path / "q.jsonl.2").read_text() == "someone else's\n"
    assert user.read_text() == "my notes\n"


def test_query_log_reopens_its_own_log(tmp_path: Path) -> None:
    log = tmp_path / "q.jsonl"
    first = QueryLog(log, max_bytes=10_000, backups=1)
    first.write(client="a", rows=1)
    first.close()
    again = QueryLog(log, max_bytes=10_000, backups=1)            # an rgaudit log: appended to
    again.write(client="b", rows=2)
    again.close()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["client"] for r in lines] == ["a", "b"]
