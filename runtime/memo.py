"""Values computed on first use and kept on their (immutable) instance."""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class computed_once(Generic[T]):  # noqa: N801 - used like functools.cached_property
    """functools.cached_property without its lock.

    In Python 3.11 cached_property takes a lock around every first computation,
    which costs about as much as hashing an extrinsic, and import computes these
    once per extrinsic. Without the lock two threads may both compute a value;
    values are pure functions of immutable instances, so either one may stay.
    """

    def __init__(self, function: Callable[[Any], T]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.function(instance)  # found there from now on
        return value
