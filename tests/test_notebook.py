"""notebooks/quickstart.ipynb runs top to bottom on the quick settings."""

from pathlib import Path
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def _text(nb) -> str:
  out = []
  for cell in nb.cells:
    for o in cell.get("outputs", []):
      out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
  return "\n".join(out)


def test_quickstart_notebook_executes(rp2_dir, monkeypatch):
  monkeypatch.setenv("BLURNET_RP2_DIR", str(rp2_dir))
  monkeypatch.setenv("BLURNET_NOTEBOOK_STEPS", "30")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": str(NOTEBOOK.parent)}})
  client.execute()  # raises CellExecutionError on any failing cell
  text = _text(nb)
  # The authors' model falls to the poster attack within a few steps (their
  # run: 100%); a broken attack or loader gives far less.
  assert "RP2 model, 40 real victims: 100% classified as stop" in text
  success = float(re.search(r"targeted success after 30 steps: ([\d.]+)%",
                            text).group(1))
  assert success >= 95.0
  # Two figures rendered (victims, spectra) and the per-layer shares.
  images = sum("image/png" in o.get("data", {}) for c in nb.cells
               for o in c.get("outputs", []))
  assert images == 2
  ratio = float(re.search(r"input\s+natural \S+\s+perturbed \S+\s+ratio "
                          r"([\d.]+)", text).group(1))
  assert ratio > 1.0  # the poster adds high-frequency energy to the input
