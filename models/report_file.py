"""A report file's YAML read into plain data within bounds, whoever sends it (the CLI, the
admin's upload and paste box, the HTTP API).

YAML can say a lot in a few bytes: nested lists of aliases (`*name`) repeat one value
exponentially, and deep nesting exhausts Python's stack. So the text is measured before it is
parsed, nesting and the number of keys and values are counted while the node graph is
composed, and the values the aliases would repeat are counted on that graph (each node once,
in time linear in the input) before a single Python object is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from models.errors import InvalidInput

MAX_BYTES = 1024 * 1024      # as the admin's upload; the demo's report is under 1 KB
MAX_DEPTH = 20               # a report nests five levels (sections, a section, its chart, ...)
MAX_NODES = 20_000           # keys and values, each alias counted as all it repeats; 200
                             # sections and 100 params take under 4,000


class _Refused(Exception):
    """Raised inside the loader when the text passes a bound; read_report_text words it."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops composing past MAX_DEPTH levels or MAX_NODES nodes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.composed = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _Refused(_too_many())
        if self.depth >= MAX_DEPTH:
            raise _Refused(_too_deep(self.peek_event().start_mark.line + 1))
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _too_many() -> str:
    return (f"holds more than {MAX_NODES:,} keys and values (an alias, *name, counts as all it "
            f"repeats); write fewer, or split the report into several")


def _too_deep(line: int | None = None) -> str:
    at = f" at line {line}" if line else ""
    return f"nests deeper than {MAX_DEPTH} levels{at}; a report needs a few, so flatten it"


def _too_large(size: int | None) -> str:
    told = f"is {size:,} bytes" if size is not None else f"is larger than {MAX_BYTES:,} bytes"
    return (f"{told}, and a report file may be at most {MAX_BYTES:,} bytes; split it into "
            f"several reports")


def read_report_text(text: str, source: str = "report") -> Any:
    """The data of one YAML document, or `InvalidInput` in one sentence naming `source` when
    the text is too large, too deep, holds too many values (aliases expanded) or is not YAML."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise InvalidInput(f"{source}: {_too_large(len(text.encode('utf-8', 'surrogatepass')))}.")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except _Refused as refused:
        raise InvalidInput(f"{source}: {refused.sentence}.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InvalidInput(f"{source}: is not valid YAML{where}; check the indentation and "
                           f"quoting.") from None
    except (ValueError, OverflowError):  # a number or date too large to read
        raise InvalidInput(f"{source}: holds a number or date herald cannot read; quote it, or "
                           f"write a smaller one.") from None
    finally:
        loader.dispose()


def read_report_file(path: Path) -> str:
    """The text of a report file, read no further than MAX_BYTES; `InvalidInput` in one
    sentence when it cannot be read, is too large or is not UTF-8."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_BYTES + 1)
            size = path.stat().st_size if path.is_file() else None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the report file ({exc.strerror}).") from None
    if len(content) > MAX_BYTES:
        raise InvalidInput(f"{path}: {_too_large(size)}.")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: is not UTF-8 text; save it as UTF-8.") from None


def _check_expansion(root: Node) -> None:
    """Refuse a graph whose aliases repeat more than MAX_NODES nodes, nest deeper than
    MAX_DEPTH once repeated, or hold themselves. Each node is visited once: its (nodes, depth)
    is remembered, counted no higher than just past the bounds."""
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            nodes, depth = 1, 0
            for child in _children(node):
                child_nodes, child_depth = measured[id(child)]
                nodes, depth = min(nodes + child_nodes, MAX_NODES + 1), max(depth, child_depth)
            measured[key] = nodes, min(depth + 1, MAX_DEPTH + 1)
            open_nodes.discard(key)
            _refuse_measured(measured[key])
            continue
        if key in measured:
            continue
        if key in open_nodes:
            raise _Refused(f"has an alias inside the value it names (line {node.start_mark.line + 1}); "
                           f"point the alias at another anchor or remove it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in measured)


def _refuse_measured(measured: tuple[int, int]) -> None:
    nodes, depth = measured
    if nodes > MAX_NODES:
        raise _Refused(_too_many())
    if depth > MAX_DEPTH:
        raise _Refused(_too_deep())


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []
