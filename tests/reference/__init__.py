"""An independent reference implementation of Weir's processor for ``shop_events``, in plain
Python, written from the contract and the pipeline SQL without calling weir:

* ``tests/reference/contract.py``: the contract's fields and rules, the output columns
  (``OUTPUT_FIELDS``, ``OUTPUT_SCHEMA``; ``POSITION_FIELDS``, null outside the consumer) and
  the result type (``BaselineResult``);
* ``tests/reference/processor.py``: ``pure_python`` and ``orjson_python``, parse + check +
  transform per record.

``tests/test_reference_agreement.py`` holds ``weir.process`` to it field by field; the
processor benchmark (``bench/processor/run.py``) times it as its Python baselines and its
pyarrow.compute baseline shares the contract module. Benchmarks import from here, never the
other way round. Import it as ``tests.reference`` with the repository root on ``sys.path``.
"""

from tests.reference.contract import OUTPUT_FIELDS, OUTPUT_SCHEMA, POSITION_FIELDS, BaselineResult
from tests.reference.processor import orjson_python, pure_python

__all__ = [
    "OUTPUT_FIELDS",
    "OUTPUT_SCHEMA",
    "POSITION_FIELDS",
    "BaselineResult",
    "orjson_python",
    "pure_python",
]
