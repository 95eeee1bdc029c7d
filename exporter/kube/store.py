"""In-memory store of one resource type, written only by its watch loop.

A :class:`Store` maps ``(namespace, name)`` to a parsed, frozen object. The watch loop owns it: it
calls :meth:`Store.replace` after every LIST (which also removes objects deleted while the watch
was down) and :meth:`Store.upsert` / :meth:`Store.delete` for each event. Readers (collectors,
indexes) only read. Subscribers get ``(key, old, new)`` for every effective change, synchronously,
on the event-loop thread, so incremental indexes stay exact without locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from exporter.model import ObjectKey

T = TypeVar("T")

Subscriber = Callable[[ObjectKey, T | None, T | None], None]
"""Called with (key, old, new): old None means added, new None means deleted."""


class Store(Generic[T]):
    """Objects of one resource type by key, plus change subscribers and a synced flag."""

    __slots__ = ("_objects", "_on_synced", "_subscribers", "resource", "synced")

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self._objects: dict[ObjectKey, T] = {}
        self._subscribers: list[Subscriber[T]] = []
        self._on_synced: list[Callable[[], None]] = []
        self.synced = asyncio.Event()
        """Set after the first complete LIST; /readyz waits for every store's flag."""

    def when_synced(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once, right after the first complete LIST (now if already done),
        synchronously, after the subscribers have seen every listed object."""
        if self.synced.is_set():
            callback()
        else:
            self._on_synced.append(callback)

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        """Register a change callback; it is first called for every object already stored."""
        self._subscribers.append(subscriber)
        for key, obj in self._objects.items():
            subscriber(key, None, obj)

    def get(self, key: ObjectKey) -> T | None:
        return self._objects.get(key)

    def values(self) -> Iterator[T]:
        return iter(self._objects.values())

    def items(self) -> Iterator[tuple[ObjectKey, T]]:
        return iter(self._objects.items())

    def snapshot(self) -> Mapping[ObjectKey, T]:
        """A read-only view of the current objects (no copy)."""
        return self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def upsert(self, key: ObjectKey, obj: T) -> None:
        old = self._objects.get(key)
        if old == obj:
            return
        self._objects[key] = obj
        self._notify(key, old, obj)

    def delete(self, key: ObjectKey) -> None:
        old = self._objects.pop(key, None)
        if old is not None:
            self._notify(key, old, None)

    def replace(self, objects: Mapping[ObjectKey, T]) -> None:
        """Make the store equal to a fresh LIST, notifying only what changed; marks synced."""
        for key in [k for k in self._objects if k not in objects]:
            self.delete(key)
        for key, obj in objects.items():
            self.upsert(key, obj)
        if not self.synced.is_set():
            self.synced.set()
            callbacks, self._on_synced = self._on_synced, []
            for callback in callbacks:
                callback()

    def _notify(self, key: ObjectKey, old: T | None, new: T | None) -> None:
        for subscriber in self._subscribers:
            subscriber(key, old, new)
