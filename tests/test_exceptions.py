"""The exception classes Rust raises exist in ``weir.exceptions`` and are ``WeirError``s: the
extension names them (``weir._native.EXCEPTION_CLASSES``) and looks each up on first use, so a
renamed or deleted class would otherwise surface only when that error happens."""

from __future__ import annotations

import pytest

import weir
from weir import _native, exceptions


def test_every_class_rust_raises_exists_and_is_a_weir_error() -> None:
    named = list(_native.EXCEPTION_CLASSES)
    assert len(named) == len(set(named)) >= 10
    missing = [name for name in named if not hasattr(exceptions, name)]
    assert not missing, f"weir.exceptions lacks {missing}"
    for name in named:
        cls = getattr(exceptions, name)
        assert isinstance(cls, type) and issubclass(cls, weir.WeirError), name
        assert getattr(weir, name) is cls, f"weir.{name} is not exported"


def test_a_raised_error_carries_its_fields() -> None:
    with pytest.raises(weir.TableError, match="no such table") as e:
        weir.lake.read("nowhere.table")
    assert e.value.table == "nowhere.table"
