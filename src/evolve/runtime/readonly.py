"""Read-only views of state values, shared by every attempt that reads them.

A node's `reads:` hands its tool the named state fields. Copying them for each attempt made a
fan-out of N items over an N-element field cost N² in time and memory; instead each field is
frozen once per value it takes (`freeze`) and every reader shares that view. The views are plain
`dict` and `list` subclasses, so JSON encoding, templates and `isinstance` checks see ordinary
values; anything that would change one raises `TypeError`. State itself is copy-on-write (the
writer builds new values, never changes old ones in place), so a view never changes under a
reader. `copy.copy`, `copy.deepcopy`, `list(view)` and `dict(view)` give ordinary mutable copies.
"""

from __future__ import annotations

import copy
from typing import Any, NoReturn

_MESSAGE = (
    "state values given to a node are read-only: change a copy (copy.deepcopy(value), "
    "list(value) or dict(value)) and return it in state_delta"
)


def _refuse(*_: Any, **__: Any) -> NoReturn:
    raise TypeError(_MESSAGE)


class ReadOnlyList(list):
    """A list that refuses every change."""

    __slots__ = ()
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        return [copy.deepcopy(item, memo) for item in self]

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (list, (list(self),))


class ReadOnlyDict(dict):
    """A dict that refuses every change."""

    __slots__ = ()
    clear = pop = popitem = setdefault = update = _refuse
    __setitem__ = __delitem__ = __ior__ = _refuse

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce_ex__(self, protocol: Any) -> Any:
        return (dict, (dict(self),))


def freeze(value: Any) -> Any:
    """`value` with every list and dict in it made read-only (scalars are immutable already)."""
    if isinstance(value, ReadOnlyList | ReadOnlyDict):
        return value
    if isinstance(value, list):
        return ReadOnlyList(freeze(item) for item in value)
    if isinstance(value, dict):
        return ReadOnlyDict((key, freeze(item)) for key, item in value.items())
    return value
