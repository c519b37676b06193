"""Where Weir finds each dataset's contract and pipeline SQL.

A dataset ``name`` has its contract at ``<home>/contracts/<name>.json`` and its pipeline SQL
at ``<home>/sql/pipeline/<name>.sql``. ``<home>`` is ``$WEIR_HOME`` when set, otherwise the
source checkout this package was installed from (``make setup`` installs it in place).
"""

from __future__ import annotations

import os
from pathlib import Path

from weir.exceptions import ContractError

_CHECKOUT = Path(__file__).resolve().parents[2]


def home() -> Path:
    """The folder holding ``contracts/`` and ``sql/``."""
    configured = os.environ.get("WEIR_HOME")
    return Path(configured).expanduser().resolve() if configured else _CHECKOUT


def checkout() -> Path:
    """The source checkout this package runs from: where ``package.json`` and the Node tools
    of the local stack (``node_modules/``, installed by ``make setup``) live."""
    return _CHECKOUT


def contract_path(contract: str | os.PathLike[str]) -> Path:
    """Resolves a dataset name or a path to a contract file, with a clear error if missing."""
    text = os.fspath(contract)
    looks_like_path = text.endswith(".json") or os.sep in text or "/" in text
    path = Path(text) if looks_like_path else home() / "contracts" / f"{text}.json"
    if not path.is_file():
        known = sorted(p.stem for p in (home() / "contracts").glob("*.json"))
        error = ContractError(
            f"no contract {text!r}: {path} does not exist "
            f"(known datasets: {', '.join(known) or 'none'})"
        )
        error.contract, error.path = str(path), "/"
        raise error
    return path


def pipeline_sql_path(dataset: str) -> Path | None:
    """The dataset's pipeline SQL file, or ``None`` if it has none."""
    path = home() / "sql" / "pipeline" / f"{dataset}.sql"
    return path if path.is_file() else None


def datasets() -> list[str]:
    """Names of every dataset with a contract."""
    return sorted(p.stem for p in (home() / "contracts").glob("*.json"))
