"""CSV files read row by row, every error naming the file, the line and the column.

The one CSV reader behind aolo's data files: Sprout's ``requests.csv`` and ``judgements.csv``
(:mod:`aolo.train.requests`), the PAI hourly job trace (:mod:`aolo.train.workload`) and Electricity
Maps exports (:mod:`aolo.runtime.grid`). It is the standard library's :mod:`csv` module (quoting,
embedded commas, line counting) with the checks every one of those readers needs: the file opens
and is UTF-8 (a byte-order mark is dropped), the header holds the wanted columns, a row is as wide
as the header, a cell is a number. pandas would report a bad line too, but the runtime stays
torch- and pandas-free, and these files are small.

Each reader raises its own error class (a ``ValueError``), so callers catch what they always caught.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["CsvRow", "read_csv_rows"]


class CsvRow:
    """One data row of a CSV file, its cells looked up by the caller's column keys.

    :param path: the file
    :param line: 1-based line of the row in the file
    :param fields: the row's cells
    :param index: column key -> index in ``fields`` (None: an optional column the file lacks)
    :param names: column key -> header name, for messages
    :param error: the exception class to raise
    """

    __slots__ = ("path", "line", "fields", "_index", "_names", "_error")

    def __init__(self, path: Path, line: int, fields: list[str], index: Mapping[str, int | None],
                 names: Mapping[str, str], error: type[ValueError]) -> None:
        self.path, self.line, self.fields, self._index, self._names, self._error = path, line, fields, index, names, error

    def has(self, key: str) -> bool:
        """Whether the file has the optional column ``key``."""
        return self._index[key] is not None

    def text(self, key: str) -> str:
        """The cell of column ``key``, stripped of surrounding spaces."""
        return self.fields[self._index[key]].strip()  # type: ignore[index]

    def error(self, key: str, message: str) -> ValueError:
        """The reader's error for a bad cell: ``<file>: line <n>: column '<name>': <message>``."""
        return self._error(f"{self.path}: line {self.line}: column {self._names[key]!r}: {message}")

    def number(self, key: str, *, allow_empty: bool = False) -> float:
        """The cell of column ``key`` as a finite number >= 0.

        :param allow_empty: an empty cell gives NaN instead of an error
        :raises: the reader's error, naming file, line and column, for an empty cell (unless
            allowed), text that is not a number, or a value that is not finite and >= 0
        """
        text = self.fields[self._index[key]].strip()  # type: ignore[index]
        if not text:
            if allow_empty:
                return math.nan
            raise self.error(key, "empty, expected a number")
        try:
            value = float(text)
        except ValueError:
            raise self.error(key, f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise self.error(key, f"{text!r} must be finite and >= 0")
        return value

    def integer(self, key: str) -> int:
        """The cell of column ``key`` as an integer; the reader's error when it is not one."""
        text = self.text(key)
        try:
            return int(text)
        except ValueError:
            raise self.error(key, f"{text!r} is not an integer") from None


def read_csv_rows(path: str | Path, columns: Mapping[str, str] | Sequence[str], *, error: type[ValueError] = ValueError,
                  optional: Mapping[str, str] | None = None,
                  header_key: Callable[[str], str] = str.strip) -> Iterator[CsvRow]:
    """The data rows of a CSV file with a header, blank lines skipped.

    :param path: the file
    :param columns: the columns every row needs, as key -> header name, or header names (each its
        own key)
    :param error: the exception class raised, with messages ``<file>: line <n>: ...``
    :param optional: columns that may be absent, key -> header name (:meth:`CsvRow.has`)
    :param header_key: how a header name is compared (applied to both sides), e.g. to ignore case
    :return: an iterator of rows; the file is open while it runs
    :raises: ``error`` when the file cannot be read or is not UTF-8, when it is empty or its header
        lacks a column (line 1), when a row is shorter than the header or not valid CSV (its line)
    """
    path = Path(path)
    wanted = dict(columns) if isinstance(columns, Mapping) else {name: name for name in columns}
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # -sig drops a byte-order mark
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None) or []
            if not any(h.strip() for h in header):
                raise error(f"{path}: line 1: empty file, expected a header with {', '.join(wanted.values())}")
            keys = [header_key(h) for h in header]
            index: dict[str, int | None] = {}
            for key, name in wanted.items():
                if header_key(name) not in keys:
                    raise error(f"{path}: line 1: column {name!r}: missing from the header (has "
                                f"{', '.join(h.strip() for h in header)})")
                index[key] = keys.index(header_key(name))
            for key, name in (optional or {}).items():
                index[key] = keys.index(header_key(name)) if header_key(name) in keys else None
            names = {**wanted, **(optional or {})}
            width = len(header)
            for record in reader:
                if len(record) < width or (not record[0].strip() and not "".join(record).strip()):
                    if not "".join(record).strip():
                        continue  # a blank line
                    raise error(f"{path}: line {reader.line_num}: row has {len(record)} fields, the header has {width}")
                yield CsvRow(path, reader.line_num, record, index, names, error)
        except UnicodeDecodeError as e:
            raise error(f"{path}: not UTF-8 text (byte {e.start})") from None
        except csv.Error as e:
            raise error(f"{path}: line {reader.line_num}: {e}") from None
