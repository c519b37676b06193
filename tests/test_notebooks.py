"""The notebooks in ``notebooks/`` run top to bottom without an error (nbclient, a real
Jupyter kernel from this environment): ``quickstart.ipynb`` on the dashboard's lake (raw
tables, marts, snapshots; ``tests/support/dashboard.py``) and on an empty one (it loads a
sample itself), ``pipeline_sql.ipynb`` on its own. They are committed without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(name: str, folder: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    )


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebooks_are_committed_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), name


def test_quickstart_on_the_demo_lake(
    dashboard_lake: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEIR_STATE_DIR", str(dashboard_lake))
    text = outputs(run("quickstart.ipynb", tmp_path))
    assert "marts.fct_events" in text and "revenue_usd" in text
    assert "No marts yet" not in text


def test_quickstart_on_an_empty_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path / "state"))
    text = outputs(run("quickstart.ipynb", tmp_path))
    assert "1 snapshots; 2000 rows at the first" in text
    assert "No marts yet: run `weir transform`" in text


def test_pipeline_sql(tmp_path: Path) -> None:
    text = outputs(run("pipeline_sql.ipynb", tmp_path))
    assert "['violations', 'transformed']" in text
    assert "rejected before:" in text and "purchases held for review" in text


def test_weir_notebook_serves_jupyterlab_on_loopback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import httpx

    from tests.support.servers import free_port, stop_process, wait_for_port

    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "weir.cli", "notebook", "--port", str(port), "--no-browser"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process, timeout=60)
        answer = httpx.get(f"http://127.0.0.1:{port}/api", timeout=10)
        assert answer.status_code == 200 and "version" in answer.json()
        login = httpx.get(f"http://127.0.0.1:{port}/lab", timeout=10)
        assert login.status_code in (200, 302)  # the lab, or its token login
    finally:
        stop_process(process)
