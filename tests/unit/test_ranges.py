"""HTTP `Range` header parsing for `/files/<name>` downloads (RFC 9110, single byte ranges)."""

from __future__ import annotations

import pytest

from soundstage.errors import AppError, ErrorCode
from soundstage_api.ranges import parse_range

SIZE = 100


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=1-2-3",
        "bytes 0-10",
        "items=0-10",
        "bytes=0x10-20",
        "bytes=0-1,5-6",  # multi-range: served as the whole file
        "bytes=0-1, 5-6",
    ],
)
def test_missing_malformed_and_multi_ranges_serve_the_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),  # the first byte
        ("bytes=0-99", (0, 99)),  # exactly the whole file
        ("bytes=10-19", (10, 19)),
        ("bytes=10-", (10, 99)),  # open-ended: to the end
        ("bytes=99-", (99, 99)),  # just the last byte
        ("bytes=99-99", (99, 99)),
        ("bytes=-5", (95, 99)),  # suffix: the last 5 bytes
        ("bytes=-1", (99, 99)),
        ("bytes=-100", (0, 99)),  # suffix as long as the file
        ("bytes=-1000", (0, 99)),  # suffix longer than the file: the whole file
        ("bytes=50-1000", (50, 99)),  # end past the size is clipped
        ("bytes=0-100", (0, 99)),
        (" bytes=10-19 ", (10, 19)),  # surrounding whitespace is tolerated
    ],
)
def test_satisfiable_ranges(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=100-",  # start == size
        "bytes=100-200",
        "bytes=150-",  # start > size
        "bytes=-0",  # an empty suffix selects nothing
        "bytes=20-10",  # end before start
        "bytes=1-0",
    ],
)
def test_unsatisfiable_ranges_are_416_with_the_size(header: str) -> None:
    with pytest.raises(AppError) as info:
        parse_range(header, SIZE)
    error = info.value
    assert error.status_code == 416
    assert error.code is ErrorCode.RANGE_NOT_SATISFIABLE
    assert error.headers == {"Content-Range": f"bytes */{SIZE}"}
    assert str(SIZE) in error.message


def test_any_range_start_is_unsatisfiable_on_an_empty_file() -> None:
    with pytest.raises(AppError) as info:
        parse_range("bytes=0-", 0)
    assert info.value.status_code == 416
    assert info.value.headers == {"Content-Range": "bytes */0"}


def test_ranges_on_a_one_byte_file() -> None:
    assert parse_range("bytes=0-0", 1) == (0, 0)
    assert parse_range("bytes=0-", 1) == (0, 0)
    assert parse_range("bytes=-1", 1) == (0, 0)
    assert parse_range("bytes=-5", 1) == (0, 0)
    with pytest.raises(AppError):
        parse_range("bytes=1-", 1)


def test_suffix_range_on_an_empty_file_is_never_an_inverted_range() -> None:
    # RFC 9110 14.1.2: a suffix longer than the representation selects all of it, which for an
    # empty file is nothing: either serve the whole (empty) file or answer 416, never (0, -1).
    try:
        result = parse_range("bytes=-5", 0)
    except AppError as error:
        assert error.status_code == 416
    else:
        assert result is None
