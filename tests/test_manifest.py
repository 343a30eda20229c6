"""The manifest reader shared by `jaxstyle batch` and `jaxstyle evaluate`."""

import json

import pytest

from jaxstyle.errors import JaxstyleError
from jaxstyle.manifest import PROBLEM, read_rows

FIELDS = ("content", "style", "output")
REQUIRED = ("content", "style")
EXAMPLE = '{"content": "a.jpg", "style": "b.jpg"}'


def rows(path):
    return read_rows(path, fields=FIELDS, required=REQUIRED, example=EXAMPLE)


def test_csv_and_json_lines_give_the_same_rows_with_their_line_numbers(tmp_path):
    (tmp_path / "m.csv").write_text("content, style ,output\n a.jpg ,b.jpg,\n\nc.jpg,d.jpg,o.png\n")
    items = [{"content": "a.jpg", "style": "b.jpg"}, {"content": "c.jpg", "style": "d.jpg", "output": "o.png"}]
    (tmp_path / "m.jsonl").write_text(json.dumps(items[0]) + "\n\n" + json.dumps(items[1]) + "\n")
    csv_rows, json_rows = rows(tmp_path / "m.csv"), rows(tmp_path / "m.jsonl")
    assert [line for line, _ in csv_rows] == [2, 4] and [line for line, _ in json_rows] == [1, 3]
    assert [row for _, row in csv_rows] == [{**items[0], "output": ""}, items[1]]
    assert [row for _, row in json_rows] == items


def test_json_text_is_recognised_without_a_json_suffix(tmp_path):
    (tmp_path / "list.txt").write_text('{"content": "a.jpg", "style": "b.jpg"}\n')
    assert rows(tmp_path / "list.txt") == [(1, {"content": "a.jpg", "style": "b.jpg"})]


def test_a_bad_row_is_that_rows_problem(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"content": "a.jpg", "style": "b.jpg"}\n{oops\n[1, 2]\n')
    (tmp_path / "m.csv").write_text("content,style\na.jpg,b.jpg\nc.jpg,d.jpg,extra\n")
    got = rows(tmp_path / "m.jsonl")
    assert PROBLEM not in got[0][1]
    assert got[1][0] == 2 and got[1][1][PROBLEM].startswith("not valid JSON") and EXAMPLE in got[1][1][PROBLEM]
    assert got[2] == (3, {PROBLEM: "expected a JSON object, got list"})
    assert rows(tmp_path / "m.csv")[1] == (3, {PROBLEM: "more cells than the header has names"})


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "", "is empty"),
    ("m.csv", "content,stile\na,b\n", r"unknown column 'stile' \(did you mean 'style'\?\)"),
    ("m.csv", "content,output\na,b\n", "the header has no style column"),
    ("m.json", '[\n  {"content": "a.jpg", "style": "b.jpg"}\n]\n', "holds a JSON array; write JSON lines"),
    ("m.jsonl", '{"content": "a.jpg",\n "style": "b.jpg"}\n', "is not JSON lines: line 1: not valid JSON"),
    ("m.jsonl", '"a.jpg"\n', "is not JSON lines: line 1: expected a JSON object, got str"),
])
def test_unusable_files_raise(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(JaxstyleError, match=message):
        rows(tmp_path / name)


def test_missing_and_unreadable_files_raise(tmp_path):
    with pytest.raises(JaxstyleError, match="does not exist"):
        rows(tmp_path / "nope.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(JaxstyleError, match="cannot read manifest"):
        rows(tmp_path / "bin.csv")


def test_an_unterminated_quote_spoils_only_its_own_line(tmp_path):
    """A quote left open used to swallow every later row into one cell, reported at the last line."""
    (tmp_path / "m.csv").write_text('content,style,output\n"a.jpg,b.jpg,o1.png\nc.jpg,d.jpg,o2.png\n\n'
                                    'e.jpg,"f.jpg",o3.png\n')
    got = rows(tmp_path / "m.csv")
    assert [line for line, _ in got] == [2, 3, 5]
    assert "a quoted cell must end with a quote on the same line" in got[0][1][PROBLEM]
    assert got[1] == (3, {"content": "c.jpg", "style": "d.jpg", "output": "o2.png"})
    assert got[2] == (5, {"content": "e.jpg", "style": "f.jpg", "output": "o3.png"})


def test_the_batch_manifest_names_the_line_with_the_open_quote(tmp_path):
    from jaxstyle.manifest import read_manifest

    (tmp_path / "m.csv").write_text('content,style,output\nc.jpg,"s.jpg,o1.png\nc.jpg,s.jpg,o2.png\n')
    first, second = read_manifest(tmp_path / "m.csv")
    assert first.problem.startswith("line 2: malformed CSV")
    assert second.problem is None and second.line == 3 and second.output == "o2.png"
