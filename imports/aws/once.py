"""`built_once`: functools.cache for values that are costly to build and shared by threads (the AWS clients).

functools.cache lets each thread that misses build a value of its own. A scan chunk's 32 read threads, starting
together in a fresh worker process, built 32 S3 clients (about 15 MB and some 30 ms of CPU apiece). Here the first
thread to miss builds the value under a lock, and the others wait for it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

# Re-entrant: building one value may ask for another (the ranged getter asks for the S3 client).
_building = threading.RLock()


class BuiltOnce(Generic[T]):
    def __init__(self, function: Callable[..., T]) -> None:
        self._cached = functools.cache(function)
        functools.update_wrapper(self, function)

    def __call__(self, *args: Hashable) -> T:
        with _building:
            return self._cached(*args)

    def cache_clear(self) -> None:
        with _building:
            self._cached.cache_clear()


def built_once(function: Callable[..., T]) -> BuiltOnce[T]:
    return BuiltOnce(function)
