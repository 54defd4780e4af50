"""The one CSV reader behind the data files: rows by key, and every error naming file, line and column."""

from pathlib import Path

import pytest

from aolo.runtime.csv_rows import read_csv_rows


class TableError(ValueError):
    pass


def rows_of(path: Path, **kwargs) -> list:
    return list(read_csv_rows(path, ("name", "value"), error=TableError, **kwargs))


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_rows_give_cells_by_key_with_their_line_skipping_blank_lines(tmp_path):
    path = write(tmp_path, '\ufeffvalue, name ,extra\n1.5,"a, quoted\nname",x\n\n  ,  , \n2,b,y\n')
    rows = rows_of(path)
    assert [(r.line, r.text("name"), r.number("value")) for r in rows] == [(3, "a, quoted\nname", 1.5), (6, "b", 2.0)]
    assert rows[1].integer("value") == 2


@pytest.mark.parametrize("text, message", [
    ("", "t.csv: line 1: empty file, expected a header with name, value"),
    ("name,other\n", "t.csv: line 1: column 'value': missing from the header (has name, other)"),
    ("name,value\na,1\nb\n", "t.csv: line 3: row has 1 fields, the header has 2"),
    ("name,value\na,1\nb,\x002\n", "t.csv: line 3: line contains NUL"),
])
def test_a_malformed_file_is_reported_by_line(tmp_path, text, message):
    with pytest.raises(TableError) as info:
        rows_of(write(tmp_path, text))
    assert str(info.value) == f"{tmp_path}/{message}"


@pytest.mark.parametrize("cell, message", [
    ("", "column 'value': empty, expected a number"),
    ("many", "column 'value': 'many' is not a number"),
    ("-1", "column 'value': '-1' must be finite and >= 0"),
    ("inf", "column 'value': 'inf' must be finite and >= 0"),
])
def test_a_bad_number_names_file_line_and_column(tmp_path, cell, message):
    (row,) = rows_of(write(tmp_path, f"name,value\na,{cell}\n"))
    with pytest.raises(TableError) as info:
        row.number("value")
    assert str(info.value) == f"{tmp_path / 't.csv'}: line 2: {message}"


def test_unreadable_and_non_utf8_files_are_reported(tmp_path):
    with pytest.raises(TableError, match=r"nothere\.csv: cannot read"):
        list(read_csv_rows(tmp_path / "nothere.csv", ("name",), error=TableError))
    with pytest.raises(TableError, match=r"t\.csv: not UTF-8 text \(byte 12\)"):
        rows_of(write(tmp_path, "name,value\na\xe9,1\n", encoding="latin-1"))


def test_optional_columns_and_a_header_key_that_ignores_case(tmp_path):
    path = write(tmp_path, "NAME,Value\na,1\n")
    (row,) = rows_of(path, optional={"note": "Note"}, header_key=lambda h: h.strip().casefold())
    assert not row.has("note") and row.text("name") == "a"
    with pytest.raises(TableError, match="column 'name': missing"):
        rows_of(path)
