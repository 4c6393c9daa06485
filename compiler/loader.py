"""Load a saga file: YAML text to plain data plus the line and column of every node.

Built on PyYAML's event stream (libyaml's C parser where available) rather than its
constructors, so that this module alone decides what a scalar means (YAML 1.2 core: `on`,
`yes` and `no` stay strings), never constructs Python objects from tags, reports duplicate keys,
and refuses hostile input (alias bombs, absurd nesting, oversized files) with a diagnostic
instead of hanging. It must never execute or import anything named by the document.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

import yaml

from .diagnostics import Diagnostic

try:  # libyaml's parser is ~10x faster; fall back to the pure-Python one.
    from yaml import CSafeLoader as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Parser  # type: ignore[assignment]

PathKey = tuple[str | int, ...]

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 2_000_000  # after alias expansion: what every later stage would have to walk
_CHUNK = 1024 * 1024  # bytes per read of a stream of unknown size


@dataclass(frozen=True, slots=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(slots=True)
class SourceMap:
    """Where each node of the loaded data came from, by its path from the root."""

    values: dict[PathKey, Mark] = field(default_factory=dict)
    keys: dict[PathKey, Mark] = field(default_factory=dict)

    def at(self, path: PathKey, *, key: bool = False) -> Mark:
        """The mark of the node at `path` (or of its key), else of its nearest ancestor."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if key and p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), Mark(1, 1))


class Document:
    """A loaded file. Positions are recorded only when asked for (`source`): a valid saga
    never needs them, and recording them costs as much as parsing."""

    __slots__ = ("_lines", "_source", "data", "file", "text")

    def __init__(self, file: str, text: str, data: Any, source: SourceMap | None = None) -> None:
        self.file, self.text, self.data, self._source = file, text, data, source
        self._lines: list[str] | None = None

    @property
    def source(self) -> SourceMap:
        if self._source is None:
            self._source = SourceMap()
            _build(self.text, self._source)
        return self._source

    def line_text(self, line: int) -> str:
        """Line `line` (1-based) of the text; the lines are split once, on first use, so that
        quoting the source under each of n diagnostics costs O(n), not O(n * size)."""
        if self._lines is None:
            self._lines = self.text.splitlines()
        lines = self._lines
        return lines[line - 1] if 0 < line <= len(lines) else ""


_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")
_PLAIN_TAGS = {None, "!"}
_STD = "tag:yaml.org,2002:"
_TYPED_TAGS: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "null": type(None),
}


_WORDS: dict[str, Any] = {
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}
_NUMBER_START = frozenset("+-.0123456789")


def resolve_plain(text: str) -> Any:
    """A plain scalar under the YAML 1.2 core schema."""
    if text in _WORDS:
        return _WORDS[text]
    if text[0] not in _NUMBER_START:
        return text  # the common case: a word
    if _INT.match(text):
        return int(text)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


_NO_TAGS = "saga files hold plain data: remove the tag"


class _Refused(Exception):
    def __init__(self, code: str, message: str, mark: Mark, hint: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.mark, self.hint = code, message, mark, hint


def _mark(m: Any) -> Mark:
    return Mark(m.line + 1, m.column + 1)


# The refusals both walks raise (`_data` fast, `_build` recording), each at PyYAML's mark `m`.
def _tag_refused(tag: str, m: Any) -> _Refused:
    return _Refused("E002", f"YAML tag {tag!r} is not allowed", _mark(m), _NO_TAGS)


def _too_deep(m: Any) -> _Refused:
    return _Refused(
        "E002", f"nesting deeper than {MAX_DEPTH} levels", _mark(m), "flatten the document"
    )


def _unknown_alias(anchor: str, m: Any) -> _Refused:
    return _Refused("E001", f"unknown alias *{anchor}", _mark(m))


def _second_document(m: Any) -> _Refused:
    return _Refused(
        "E001",
        "a saga file holds one YAML document",
        _mark(m),
        "remove the `---` separator, or split the file",
    )


def _too_many_nodes(m: Any) -> _Refused:
    return _Refused(
        "E002",
        f"document expands to more than {MAX_NODES:,} nodes",
        _mark(m),
        "an alias bomb? reduce the use of YAML anchors and aliases",
    )


def _complex_key(m: Any) -> _Refused:
    return _Refused("E001", "a mapping key must be a scalar", _mark(m))


def _duplicate_key(key: str, m: Any) -> _Refused:
    return _Refused(
        "E003",
        f"duplicate key {key!r}",
        _mark(m),
        "each key may appear once in a mapping; remove or rename one",
    )


def _scalar(event: Any) -> Any:
    tag, text = event.tag, event.value
    if tag in _PLAIN_TAGS:
        # implicit[0]: plain and untagged; quoted scalars and `!` are always strings.
        return resolve_plain(text) if tag is None and event.implicit[0] else text
    kind = tag[len(_STD) :] if tag.startswith(_STD) else None
    if kind == "str":
        return text
    expected = _TYPED_TAGS.get(kind or "")
    if expected is None:
        raise _Refused(
            "E002", f"YAML tag {tag!r} is not allowed", _mark(event.start_mark), _NO_TAGS
        )
    value = resolve_plain(text)
    if not isinstance(value, expected):
        raise _Refused("E002", f"YAML tag {tag!r} does not fit {text!r}", _mark(event.start_mark))
    return float(cast(float, value)) if kind == "float" else value


class _Frame:
    __slots__ = ("anchor", "container", "key", "path", "size", "start_mark")

    def __init__(self, container: Any, path: PathKey, start_mark: Any, anchor: str | None) -> None:
        self.container = container
        self.path = path
        self.start_mark = start_mark  # PyYAML's (0-based) mark
        self.anchor = anchor
        self.key: Any = _NO_KEY
        self.size = 1


_NO_KEY = object()


def _build(text: str, source: SourceMap | None) -> Any:
    """Turn the event stream into data; iterative, so depth cannot overflow.

    With `source`, also record the mark of every node and key (the slow path, for diagnostics).
    """
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int]] = {}
    total = 0
    root: Any = None
    documents = 0
    record = source is not None
    values = source.values if source is not None else {}
    keys = source.keys if source is not None else {}
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    collection_end = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
    no_key = _NO_KEY

    event: Any
    for event in yaml.parse(text, Loader=_Parser):
        etype = type(event)
        if etype is scalar_event:
            tag = event.tag
            if tag is None and event.implicit[0]:
                value = resolve_plain(event.value)
            elif tag in _PLAIN_TAGS:
                value = event.value
            else:
                value = _scalar(event)
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            size = new = 1
        elif etype is mapping_start or etype is sequence_start:
            if event.tag not in _PLAIN_TAGS and event.tag not in (_STD + "map", _STD + "seq"):
                raise _tag_refused(event.tag, event.start_mark)
            if len(stack) >= MAX_DEPTH:
                raise _too_deep(event.start_mark)
            path: PathKey = ()
            if record:
                if stack:
                    top = stack[-1]
                    c = top.container
                    path = (*top.path, len(c) if type(c) is list else top.key)
                values[path] = _mark(event.start_mark)
            container: Any = {} if etype is mapping_start else []
            stack.append(_Frame(container, path, event.start_mark, event.anchor))
            continue
        elif etype in collection_end:
            frame = stack.pop()
            if frame.anchor:
                anchors[frame.anchor] = (frame.container, frame.size)
            value, size, new = frame.container, frame.size, 0
            event = frame  # its start mark stands for the collection below
        elif etype is alias_event:
            if event.anchor not in anchors:
                raise _unknown_alias(event.anchor, event.start_mark)
            value, size = anchors[event.anchor]
            new = size
        else:
            if etype is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _second_document(event.start_mark)
            continue

        # Attach `value` to its parent; each node counts once towards the expansion limit
        # (a collection's own nodes were counted as they arrived; an alias adds its copy).
        total += new
        if total > MAX_NODES:
            raise _too_many_nodes(event.start_mark)
        if not stack:
            root = value
            continue
        top = stack[-1]
        top.size += size
        c = top.container
        if type(c) is list:
            if record and etype is not mapping_start and etype not in collection_end:
                values[(*top.path, len(c))] = _mark(event.start_mark)
            c.append(value)
        elif top.key is no_key:
            if type(value) is dict or type(value) is list:
                raise _complex_key(event.start_mark)
            key = value if type(value) is str else _key_text(value)
            if key in c:
                raise _duplicate_key(key, event.start_mark)
            top.key = key
            if record:
                keys[(*top.path, key)] = _mark(event.start_mark)
        else:
            if record and etype not in collection_end:
                values[(*top.path, top.key)] = _mark(event.start_mark)
            c[top.key] = value
            top.key = no_key
    if record and root is not None and () not in values:
        values[()] = Mark(1, 1)
    return root


def _data(text: str) -> Any:
    """Turn the event stream into data: the hot path of every compilation.

    The same walk as `_build` without positions, written for speed: the open containers live in
    locals rather than frame objects, the common scalars (words, null, booleans) are resolved
    inline, and a collection's node count (for an anchor) is derived from two counters instead
    of being summed child by child. `tests/compiler/test_loader.py` checks that both walks
    agree, errors included.
    """
    parser = _Parser(text)
    try:
        return _walk(parser.get_event)
    finally:
        parser.dispose()


def _walk(get_event: Any) -> Any:
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    mapping_start, sequence_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
    mapping_end, sequence_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    document_start = yaml.DocumentStartEvent
    collection_tags = (*_PLAIN_TAGS, _STD + "map", _STD + "seq")
    words, number_start, no_key, max_nodes = _WORDS, _NUMBER_START, _NO_KEY, MAX_NODES
    # One entry per open collection: what was open around it and the counters at its start.
    stack: list[tuple[Any, bool, Any, Any, str | None, int, int]] = []
    anchors: dict[str, tuple[Any, int]] = {}
    total = 0  # scalars, plus what each alias expands to
    collections = 0  # collections opened so far
    container: Any = None  # the innermost open collection (None: at the root)
    is_list = False
    key: Any = no_key  # in a mapping: the key waiting for its value
    root: Any = None
    documents = 0
    start_mark: Any = None
    event: Any
    for event in iter(get_event, None):
        etype = type(event)
        if etype is scalar_event:
            tag, value = event.tag, event.value
            if tag is None:
                if event.implicit[0]:
                    if value in words:
                        value = words[value]
                    elif value[0] in number_start:
                        value = resolve_plain(value)
            elif tag != "!":
                value = _scalar(event)
            if event.anchor:
                anchors[event.anchor] = (value, 1)
            total += 1
        elif etype is mapping_end or etype is sequence_end:
            value = container
            container, is_list, key, start_mark, anchor, total0, collections0 = stack.pop()
            if anchor:
                anchors[anchor] = (value, total - total0 + collections - collections0)
        elif etype is mapping_start or etype is sequence_start:
            if event.tag not in collection_tags:
                raise _tag_refused(event.tag, event.start_mark)
            if len(stack) >= MAX_DEPTH:
                raise _too_deep(event.start_mark)
            stack.append(
                (container, is_list, key, event.start_mark, event.anchor, total, collections)
            )
            collections += 1
            is_list = etype is sequence_start
            container = [] if is_list else {}
            key = no_key
            continue
        elif etype is alias_event:
            if event.anchor not in anchors:
                raise _unknown_alias(event.anchor, event.start_mark)
            value, size = anchors[event.anchor]
            total += size
        else:
            if etype is document_start:
                documents += 1
                if documents > 1:
                    raise _second_document(event.start_mark)
            continue

        if total > max_nodes:
            raise _too_many_nodes(event.start_mark)
        if is_list:
            container.append(value)
        elif container is None:
            root = value
        elif key is no_key:
            if type(value) is str:
                key = value
            elif type(value) is dict or type(value) is list:
                m = (
                    start_mark
                    if etype is mapping_end or etype is sequence_end
                    else event.start_mark
                )
                raise _complex_key(m)
            else:
                key = _key_text(value)
            if key in container:
                m = (
                    start_mark
                    if etype is mapping_end or etype is sequence_end
                    else event.start_mark
                )
                raise _duplicate_key(key, m)
        else:
            container[key] = value
            key = no_key
    return root


def _key_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _too_large(file: str) -> Diagnostic:
    return Diagnostic(
        "E002",
        f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB",
        file,
        hint="a saga file is a definition, not data: pass large data as the run's input",
    )


def _position(text: str, index: int) -> tuple[int, int]:
    """The 1-based line and column of character `index` of `text` (lines end at \\n)."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _tab_in_indentation(text: str, line: int) -> tuple[int, int] | None:
    """The place of the first tab in the indentation of line `line` or the line before it
    (where PyYAML's complaint about a tab usually lands), if there is one."""
    lines = text.split("\n", line)
    for n in (line - 1, line):
        if 0 < n <= len(lines):
            src = lines[n - 1]
            indent = src[: len(src) - len(src.lstrip(" \t"))]
            if "\t" in indent:
                return n, indent.index("\t") + 1
    return None


def _syntax_error(e: yaml.MarkedYAMLError, text: str, file: str) -> Diagnostic:
    m = e.problem_mark or e.context_mark
    line, col = (m.line + 1, m.column + 1) if m else (1, 1)
    tab = _tab_in_indentation(text, line)
    if tab is not None or (m is not None and text[m.index : m.index + 1] == "\t"):
        line, col = tab or (line, col)
        return Diagnostic(
            "E001",
            "tab character in the indentation: YAML forbids tabs for indentation",
            file,
            line,
            col,
            "indent with spaces (configure your editor to insert spaces for the Tab key)",
        )
    problem = e.problem or "invalid YAML"
    context = f" ({e.context})" if e.context else ""
    hint = "check the indentation, quotes and brackets here and on the line before"
    return Diagnostic("E001", f"{problem}{context}", file, line, col, hint)


def load_text(text: str, file: str = "<string>") -> tuple[Document | None, list[Diagnostic]]:
    """Parse `text`; on failure return no document and the diagnostics saying why."""
    if len(text) > MAX_BYTES:
        return None, [_too_large(file)]
    try:
        data = _data(text)
    except _Refused as r:
        return None, [Diagnostic(r.code, r.message, file, r.mark.line, r.mark.column, r.hint)]
    except yaml.MarkedYAMLError as e:
        return None, [_syntax_error(e, text, file)]
    except yaml.reader.ReaderError as e:  # a control character, at its place
        line, col = _position(text, e.position)
        code = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        return None, [
            Diagnostic(
                "E001",
                f"character #x{code:04x} is not allowed in a YAML file",
                file,
                line,
                col,
                f'remove it, or write it as an escape in a double-quoted string: "\\u{code:04x}"',
            )
        ]
    except yaml.YAMLError as e:
        return None, [Diagnostic("E001", str(e).splitlines()[0], file)]
    return Document(file, text, data), []


class TooLarge(Exception):
    """A file or stream holds more bytes than the reader's limit."""


def read_stream(stream: BinaryIO, limit: int) -> bytes:
    """Every byte of `stream` up to `limit`: reads at most `limit + 1` bytes, chunk by chunk,
    and raises `TooLarge` when there are more, whatever the source sends (/dev/zero, a pipe)."""
    buf = bytearray()
    while len(buf) <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    if len(buf) > limit:
        raise TooLarge(f"more than {limit} bytes")
    return bytes(buf)


def read_limited(path: str | Path, limit: int) -> bytes:
    """The bytes of the file at `path`, refusing (`TooLarge`) one of more than `limit` bytes
    before reading it when its size is known, and after `limit + 1` bytes when it is not (a
    device, a pipe). Opened without blocking, so that a FIFO with no writer reads as empty
    instead of hanging. Raises OSError when the file cannot be read."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise TooLarge(f"{st.st_size} bytes")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return read_stream(f, limit)


def decode(raw: bytes, file: str) -> tuple[str | None, Diagnostic | None]:
    """UTF-8 text (a BOM is dropped), or the diagnostic placing the first bad byte at its line
    and column (counted in characters, as an editor shows them)."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        start = raw.rfind(b"\n", 0, e.start) + 1
        line = raw.count(b"\n", 0, e.start) + 1
        column = len(raw[start : e.start].decode("utf-8-sig", errors="replace")) + 1
        return None, Diagnostic(
            "E001",
            f"file is not UTF-8: byte 0x{raw[e.start]:02x} is {e.reason}",
            file,
            line,
            column,
            "save the file as UTF-8",
        )


def load_file(path: str | Path) -> tuple[Document | None, list[Diagnostic]]:
    """Read and parse a saga file; an unreadable file is a diagnostic, not a traceback."""
    name = str(path)
    try:
        raw = read_limited(path, MAX_BYTES)
    except TooLarge:
        return None, [_too_large(name)]
    except OSError as e:
        return None, [Diagnostic("E004", f"cannot read file: {e.strerror or e}", name)]
    if not raw and not Path(path).is_file():
        hint = "pass a file, or make sure something writes to it before sagac reads"
        return None, [
            Diagnostic("E004", "cannot read file: nothing was written to it", name, hint=hint)
        ]
    text, bad = decode(raw, name)
    if text is None:
        return None, [bad] if bad else []
    return load_text(text, name)
