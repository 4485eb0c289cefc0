"""A YAML loader that refuses, while composing and before anything is built from the
document, what would blow up later: aliases that expand past a small budget (a "billion
laughs" bomb), an alias to a node that contains it, and nesting deeper than any policy.

PyYAML composes an alias as a second reference to the anchored node, so the composed
graph stays the size of the text; everything after it (constructing Python objects, the
source map, ``${VAR}`` interpolation, pydantic) walks the document as expanded, where a
few hundred bytes can stand for billions of nodes. So the loader adds up, as it composes,
how many nodes the aliases stand for, and stops at the first alias past the budget.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent

# Nodes that aliases may add to a document once expanded. Sharing a block of defaults
# among a hundred models, or a list of examples among a few signals, stays far below it;
# a bomb passes it within a few lines, having built nothing yet.
MAX_ALIAS_NODES = 20_000
# Deeper than any policy (rules nest a few levels), shallow enough for every recursive
# walk after parsing to stay far from Python's recursion limit.
MAX_DEPTH = 100


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the limits above; errors are ``ComposerError`` with the
    line of the offending alias or node, like any other YAML error."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> its node count once expanded
        self._expanded = 0  # nodes composed so far, aliases counted as what they stand for
        self._aliased = 0  # of which aliases stood for this many
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            self._count_alias(self._next_event())
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self._next_event().start_mark
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        before = self._expanded
        self._expanded += 1
        node = super().compose_node(parent, index)
        self._sizes[id(node)] = self._expanded - before
        self._depth -= 1
        return node

    def _next_event(self) -> Any:
        return self.peek_event()  # type: ignore[no-untyped-call]  # (PyYAML's stubs)

    def _count_alias(self, event: Any) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # PyYAML reports an undefined alias itself
        size = self._sizes.get(id(node))
        if size is None:  # still being composed: the alias is inside its own anchor
            raise ComposerError(
                None,
                None,
                f"alias *{event.anchor} refers to a node that contains it",
                event.start_mark,
            )
        self._expanded += size
        self._aliased += size
        if self._aliased > MAX_ALIAS_NODES:
            raise ComposerError(
                None,
                None,
                f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?); "
                "refused before expanding them",
                event.start_mark,
            )


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and its composed node (None when empty); one parse for both."""
    loader = BoundedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, node
