"""The files of a bulk send: the CSV is checked whole before anything goes, and the result
file keeps each row's id across crashes (a line cut short is ignored)."""

from __future__ import annotations

import pytest

from simgate.client.bulk import BulkInputError, ResultFile, Row, read_rows
from simgate.client.config import ConfigError, read_config


def test_rows_are_read_with_quoted_commas_and_an_optional_sim(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text('Phone,Text,sim\n+12025550101,"Hello, world",2\n+12025550102,plain,\n')
    assert read_rows(path) == [Row(1, "+12025550101", "Hello, world", 2),
                               Row(2, "+12025550102", "plain", None)]


@pytest.mark.parametrize(("content", "words"), [
    ("phone\n+1\n", "text"),
    ("phone,text,colour\n+1,hi,red\n", "unknown column(s) colour"),
    ("phone,text\n+1,hi\n+2,\n", "row 2: no text"),
    ("phone,text,sim\n+1,hi,65\n", "row 1: sim '65'"),
    ("phone,text\n+1,hi,there\n", "quote a text"),
    ("phone,text\n", "no rows"),
    ("phone,text,id\n+1,a,x\n+2,b,x\n", "repeats an id"),
])
def test_a_bad_csv_is_refused_naming_what_to_fix(tmp_path, content, words):
    path = tmp_path / "list.csv"
    path.write_text(content)
    with pytest.raises(BulkInputError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_rows(path)


def test_ids_are_written_before_sending_and_survive_a_line_cut_short(tmp_path):
    rows = [Row(1, "+1", "a"), Row(2, "+2", "b"), Row(3, "+3", "c", id="mine")]
    path = tmp_path / "result.csv"
    results = ResultFile(path)
    planned = results.plan(rows)
    assert planned[2].id == "mine" and len({p.id for p in planned}) == 3
    results.close()  # as after kill -9: the ids are on disk already
    with path.open("a") as file:
        file.write("2,+2,")  # a crash in the middle of a line
    again = ResultFile(path)
    assert [again.outcomes[n].id for n in (1, 2, 3)] == [p.id for p in planned]
    assert again.plan(rows) == planned  # the same ids again, none new
    again.write(planned[1])  # a line after the cut one starts a line of its own
    again.close()
    assert ResultFile(path).outcomes[2] == planned[1]


def test_a_result_file_of_another_csv_is_refused(tmp_path):
    path = tmp_path / "result.csv"
    results = ResultFile(path)
    results.plan([Row(1, "+1", "a")])
    results.close()
    with pytest.raises(BulkInputError, match="another CSV"):
        ResultFile(path).check([Row(1, "+9", "a")])


def test_a_config_file_with_a_password_must_be_private(tmp_path):
    path = tmp_path / "client.toml"
    path.write_text('server = "http://gw:3000"\nusername = "me"\npassword = "secret"\n')
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_config(path)
    path.chmod(0o600)
    assert read_config(path)["username"] == "me"
    path.write_text('sever = "typo"\n')
    with pytest.raises(ConfigError, match="unknown key"):
        read_config(path)
