"""Weir's UDFs in datafusion-python, so notebooks run the exact functions the pipeline runs::

    import datafusion, weir
    ctx = datafusion.SessionContext()
    weir.register_udfs(ctx)
    ctx.sql("select weir_normalize_email(' A@B.COM ')").show()

The functions are native (Rust) and cross into datafusion-python through datafusion-ffi
capsules; no Python runs per row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weir import _native

if TYPE_CHECKING:
    import datafusion


def udf_names() -> list[str]:
    """Names of every Weir UDF."""
    return [u.name for u in _native.udfs()]


def register_udfs(ctx: datafusion.SessionContext) -> list[str]:
    """Registers every Weir UDF into ``ctx`` and returns their names."""
    from datafusion import udf

    names = []
    for native in _native.udfs():
        ctx.register_udf(udf(native))
        names.append(native.name)
    return names
