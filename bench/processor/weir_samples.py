"""``weir.samples`` for the processor benchmark, also when ``weir`` is not built: the sample
generator is pure Python, so without the extension it is loaded from its file, and the
baselines can still be run and checked (``bench/processor/run.py``, ``self_check.py``).
Not a program; import ``load_samples`` from a script in this folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_samples() -> ModuleType:
    """``weir.samples``, or the same file loaded by path when ``weir`` is not importable yet."""
    try:
        from weir import samples

        return samples
    except ImportError:
        path = Path(__file__).resolve().parents[2] / "python" / "weir" / "samples.py"
        spec = importlib.util.spec_from_file_location("_weir_samples", path)
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
