"""A bounded cache of encoded prompts, so that the same dev set is not tokenised again at every
evaluation of a run (and of every candidate that shares its template and label words).

An encoding is a function of the backbone's tokenizer, the template, the label words, the example, the
demonstrations shown with it and the length limits; the key holds all of them (the backbone by
identity, through a weak reference, so a dropped backbone takes its entries with it). Cached
`Encoded` objects are shared: callers must not modify them.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Callable, Hashable

MAX_ENTRIES = 4096  # a few dev sets with their demonstration sets; about 25 MB of token lists at most


class EncodingCache:
    """Least-recently-used map from a prompt's key to its encoding, holding at most `max_entries`."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()  # Dask runs several evaluations as threads of one process
        self.hits = self.misses = 0

    def get(self, key: Hashable, encode: Callable[[], object]):
        try:
            hash(key)
        except TypeError:  # an unhashable part (e.g. a custom demonstration type): no caching
            return encode()
        with self._lock:
            if key in self._entries:
                self.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key]
        value = encode()
        with self._lock:
            self.misses += 1
            self._entries[key] = value
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHES: "weakref.WeakKeyDictionary[object, EncodingCache]" = weakref.WeakKeyDictionary()


def encoding_cache(backbone) -> EncodingCache:
    """The cache of `backbone` (one per backbone: encodings depend on its tokenizer)."""
    cache = _CACHES.get(backbone)
    if cache is None:
        cache = _CACHES[backbone] = EncodingCache()
    return cache


def clear_encoding_cache() -> None:
    for cache in list(_CACHES.values()):
        cache.clear()
