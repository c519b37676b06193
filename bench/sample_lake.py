"""What the benchmarks that fill a lake with generated sample events share (``bench/dbt``,
``bench/quality``, ``bench/dashboard``): a private state folder and the processed events.
Not a program; a benchmark imports it with the repository root on ``sys.path``:

    sys.path.insert(0, str(ROOT))
    from bench import sample_lake
    state = sample_lake.private_state("weir-bench-x-")    # sets WEIR_STATE_DIR, before weir
    processed = sample_lake.processed_events(1_020_000)   # .output, .rejected (ProcessResult)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

#: Every events generator of the benchmarks draws with this seed and invalid share.
SEED = 7
INVALID_FRACTION = 0.02


def private_state(prefix: str, folder: Path | None = None) -> Path:
    """Points Weir at a state folder of its own (``folder``, created if missing; default: a
    new temporary folder named ``prefix...``): ``WEIR_STATE_DIR`` set, ``WEIR_LOG=error``,
    and the variables that would send it elsewhere unset (``WEIR_METASTORE_URI``,
    ``WEIR_WAREHOUSE``, ``WEIR_CONFIG``, ``WEIR_HOME``, every ``WEIR_ALERT_*``). Call it
    before Weir reads its settings."""
    state = folder or Path(tempfile.mkdtemp(prefix=prefix))
    state.mkdir(parents=True, exist_ok=True)
    os.environ["WEIR_STATE_DIR"] = str(state)
    os.environ["WEIR_LOG"] = "error"
    for name in [
        "WEIR_METASTORE_URI",
        "WEIR_WAREHOUSE",
        "WEIR_CONFIG",
        "WEIR_HOME",
        *(n for n in os.environ if n.startswith("WEIR_ALERT_")),
    ]:
        os.environ.pop(name, None)
    return state


def processed_events(count: int) -> Any:
    """``count`` sample ``shop_events`` with history (``weir.samples``, :data:`SEED`,
    :data:`INVALID_FRACTION` invalid) through ``weir.process``: a
    ``weir.processor.ProcessResult`` (``output`` valid rows, ``rejected`` records)."""
    import weir
    from weir import samples

    events = samples.generate_shop_events(count, invalid_fraction=INVALID_FRACTION, seed=SEED)
    text = json.dumps(events)
    del events
    return weir.process(text, "json")
