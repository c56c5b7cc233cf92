"""The RP2 authors' real assets, shipped with the package.

The victim model (their LISA-trained LisaCNN), the 40 real stop-sign
victims, the camouflage and poster masks, their two final perturbations,
the printable colours and the class mapping, all from the RP2 paper's public
repository (see `data/rp2/NOTICE` and the authors' MIT `LICENSE` beside it).

  assets = load_rp2_assets()           # the packaged copy
  assets = load_rp2_assets("/my/rp2")  # any folder laid out the same way
  logits = models.apply_fn_for(models.LisaCNN())(assets.params, assets.victims)

A folder holds `rp2_lisa_cnn.npz`, `victim-set/*.png`,
`masks/mask_l1loss_uniform_rectangles.png`, `masks/octagon.png`,
`printable_colors.txt` and `mapping.txt` (`RP2_FILES`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
import zipfile

import jax.numpy as jnp
import numpy as np

from blurnet_jax.classes import IMAGE_SHAPE
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import sources
from blurnet_jax.data import victims as victims_lib

#: Parameters as `LisaCNN` takes them: {layer: {'kernel', 'bias'}}.
Params = dict[str, dict[str, jnp.ndarray]]
#: The shapes the RP2 authors' LISA-CNN has (the file format this loader
#: reads; the model layer owns the module and checks params it is given).
RP2_PARAM_SHAPES = {
    "conv1": {"kernel": (8, 8, 3, 64), "bias": (64,)},
    "conv2": {"kernel": (6, 6, 64, 128), "bias": (128,)},
    "conv3": {"kernel": (5, 5, 128, 128), "bias": (128,)},
    "dense": {"kernel": (512, 18), "bias": (18,)},
}

#: The packaged copy of the assets.
PACKAGED_DIR: Path = Path(__file__).resolve().parent / "rp2"
#: What a folder of RP2 assets must hold (relative paths).
RP2_FILES: tuple[str, ...] = (
    "rp2_lisa_cnn.npz",
    "victim-set",
    "masks/mask_l1loss_uniform_rectangles.png",
    "masks/octagon.png",
    "printable_colors.txt",
    "mapping.txt",
)
#: Keras variable names of the RP2 checkpoint -> (layer, leaf) of `LisaCNN`.
#: Keras stores conv kernels HWIO and dense kernels (in, out), flax's
#: layouts, and both flatten the last conv output in (H, W, C) order, so no
#: transpose.
RP2_PARAM_NAMES: dict[str, tuple[str, str]] = {
    "convolution2d_1_W": ("conv1", "kernel"),
    "convolution2d_1_b": ("conv1", "bias"),
    "convolution2d_2_W": ("conv2", "kernel"),
    "convolution2d_2_b": ("conv2", "bias"),
    "convolution2d_3_W": ("conv3", "kernel"),
    "convolution2d_3_b": ("conv3", "bias"),
    "dense_1_W": ("dense", "kernel"),
    "dense_1_b": ("dense", "bias"),
}
RP2_NOISE_NAMES: tuple[str, ...] = (
    "noise_rectangles_camouflage",
    "noise_octagon_poster",
)


@dataclasses.dataclass(frozen=True)
class RP2Assets:
  """Everything of one RP2 asset folder, loaded and checked.

  Attributes:
    root: the folder.
    params: the authors' LisaCNN as `LisaCNN` params (no filter).
    victims: float32 (40, 32, 32, 3) in [0, 1], ordered by file number.
    victim_names: their file names.
    camouflage_mask, octagon_mask: float32 (32, 32, 3), 0 or 1.
    camouflage_noise, poster_noise: float32 (32, 32, 3), the authors' final
      perturbations as stored (before the [-20, 20] clip of their attack).
    printable_colors: float32 (K, 3) in [0, 1].
    mapping: the authors' class names; mapping[i] names output i + 1.
  """

  root: Path
  params: Params
  victims: np.ndarray
  victim_names: tuple[str, ...]
  camouflage_mask: np.ndarray
  octagon_mask: np.ndarray
  camouflage_noise: np.ndarray
  poster_noise: np.ndarray
  printable_colors: np.ndarray
  mapping: tuple[str, ...]

  @property
  def npz(self) -> Path:
    return self.root / "rp2_lisa_cnn.npz"


def rp2_dir(path: str | os.PathLike[str] | None = None) -> Path:
  """The asset folder: `path`, or the packaged copy when empty or None.

  Raises:
    FileNotFoundError: a file of `RP2_FILES` is missing (named in the
      message).
  """
  root = Path(path) if path else PACKAGED_DIR
  if not root.is_dir():
    raise FileNotFoundError(
        f"rp2_dir {str(root)!r} is not a folder; pass a folder laid out like "
        f"the packaged RP2 assets ({PACKAGED_DIR}) or leave it empty")
  for name in RP2_FILES:
    if not (root / name).exists():
      raise FileNotFoundError(
          f"rp2_dir {str(root)!r} has no {name}; a folder of RP2 assets "
          f"holds {', '.join(RP2_FILES)} (leave rp2_dir empty for the "
          "packaged copy)")
  return root


#: The sha256 of every packaged asset file (`sha256sum` format), shipped
#: beside them; a folder of assets that carries one is checked against it.
MANIFEST = "SHA256SUMS"


def verify(root: Path) -> int:
  """Checks the files of an asset folder against its MANIFEST (the packaged
  copy must have one); returns how many were checked (0: no manifest).

  Raises:
    ValueError: one line naming a file whose bytes differ or that is
      missing, and the fix.
  """
  manifest = root / MANIFEST
  if not manifest.is_file():
    if root.resolve() == PACKAGED_DIR:
      raise ValueError(f"the packaged RP2 assets have no {MANIFEST}; the "
                       "installation is damaged: reinstall blurnet-jax")
    return 0
  fix = ("reinstall blurnet-jax" if root.resolve() == PACKAGED_DIR else
         f"copy the assets again or fix {manifest}")
  lines = [line.split(maxsplit=1) for line in
           manifest.read_text().splitlines() if line.strip()]
  for digest, name in lines:
    path = root / name.strip().lstrip("*")
    if not path.is_file():
      raise ValueError(f"RP2 asset {path} listed in {manifest} is missing; "
                       f"{fix}")
    if sources.content_sha256(path) != digest:
      raise ValueError(f"RP2 asset {path} does not match its sha256 in "
                       f"{manifest}; {fix}")
  return len(lines)


def load_rp2_assets(path: str | os.PathLike[str] | None = None) -> RP2Assets:
  """Loads and checks an RP2 asset folder (default: the packaged copy,
  whose every file is checked against its sha256 first: `verify`)."""
  root = rp2_dir(path)
  verify(root)
  npz = root / "rp2_lisa_cnn.npz"
  victims, names = victims_lib.load_victims_with_names(root / "victim-set")
  mapping = tuple(line.strip() for line in
                  (root / "mapping.txt").read_text().splitlines()
                  if line.strip())
  return RP2Assets(
      root=root, params=params_from_rp2(npz), victims=victims,
      victim_names=tuple(names),
      camouflage_mask=masks_lib.load_mask(
          root / "masks/mask_l1loss_uniform_rectangles.png"),
      octagon_mask=masks_lib.load_mask(root / "masks/octagon.png"),
      camouflage_noise=np.asarray(
          load_rp2_noise(npz, "noise_rectangles_camouflage")),
      poster_noise=np.asarray(load_rp2_noise(npz, "noise_octagon_poster")),
      printable_colors=load_printable_colors(root / "printable_colors.txt"),
      mapping=mapping)


def _load_npz(npz_path: str | os.PathLike[str], keys: tuple[str, ...],
              what: str) -> dict[str, np.ndarray]:
  """Reads `keys` from an .npz without pickle; one-line errors."""
  path = os.fspath(npz_path)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{what} not found: {path!r}; pass the path of rp2_lisa_cnn.npz "
        "(the packaged copy is load_rp2_assets().npz).")
  try:
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
      raise ValueError("a single .npy array, not an .npz archive")
    with data:
      files = set(data.files)
      arrays = {key: np.asarray(data[key]) for key in keys if key in files}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    # A .npy, a pickle, object arrays or a corrupt archive.
    reason = (str(e).split(". ")[0].splitlines() or [type(e).__name__])[0]
    raise ValueError(
        f"{path!r} is not a readable .npz of plain arrays ({reason}); pass "
        "rp2_lisa_cnn.npz.") from None
  for key in keys:
    if key not in arrays:
      raise ValueError(
          f"{path!r} has no array {key!r}; this file is not an RP2 LISA-CNN, "
          "pass rp2_lisa_cnn.npz.")
  return arrays


def params_from_rp2(npz_path: str | os.PathLike[str]) -> Params:
  """Loads the RP2 authors' trained LISA-CNN as `LisaCNN` params.

  Args:
    npz_path: path of `rp2_lisa_cnn.npz` (Keras names, see `RP2_PARAM_NAMES`).

  Returns:
    {'conv1': {'kernel', 'bias'}, 'conv2': ..., 'conv3': ..., 'dense': ...},
    float32, for `models.apply_fn_for(models.LisaCNN())(params, x)`.

  Raises:
    FileNotFoundError: no file at `npz_path`.
    ValueError: not an .npz, a key missing, or an array whose shape is not
      the one the RP2 LISA-CNN has (`RP2_PARAM_SHAPES`, which
      `tests/test_architecture.py` holds equal to `models.param_shapes()`).
  """
  path = os.fspath(npz_path)
  arrays = _load_npz(path, tuple(RP2_PARAM_NAMES), "RP2 model file")
  expected = RP2_PARAM_SHAPES
  params: Params = {layer: {} for layer in expected}
  for key, (layer, leaf) in RP2_PARAM_NAMES.items():
    array = arrays[key]
    shape = expected[layer][leaf]
    if array.shape != shape or not np.issubdtype(array.dtype, np.floating):
      raise ValueError(
          f"{path!r}: {key!r} is {array.dtype} {array.shape}, LisaCNN expects "
          f"float {shape} for {layer}/{leaf}; this file is not an RP2 "
          "LISA-CNN.")
    params[layer][leaf] = jnp.asarray(array, jnp.float32)
  return params


def load_rp2_noise(npz_path: str | os.PathLike[str], name: str):
  """One of the RP2 authors' final attack perturbations.

  Args:
    npz_path: path of `rp2_lisa_cnn.npz`.
    name: 'noise_rectangles_camouflage' or 'noise_octagon_poster'.

  Returns:
    float32 (32, 32, 3), as stored: before the [-20, 20] clip of their attack,
    so apply `clip(x + mask * clip(noise, -20, 20), 0, 1)`.
  """
  if isinstance(name, bool) or name not in RP2_NOISE_NAMES:
    raise ValueError(
        f"name={name!r} is not supported; use one of {RP2_NOISE_NAMES}.")
  path = os.fspath(npz_path)
  noise = _load_npz(path, (name,), "RP2 assets file")[name]
  if noise.shape != IMAGE_SHAPE or not np.issubdtype(noise.dtype, np.floating):
    raise ValueError(
        f"{path!r}: {name!r} is {noise.dtype} {noise.shape}, expected float "
        f"{IMAGE_SHAPE}; this file is not the RP2 assets file.")
  return jnp.asarray(noise, jnp.float32)


def load_printable_colors(path: str | os.PathLike[str]) -> np.ndarray:
  """Reads a printable-colour file: one 'r, g, b' triplet in [0, 1] a line.

  Commas and/or whitespace separate the values; blank lines and lines
  starting with '#' are skipped.

  Args:
    path: e.g. `load_rp2_assets().root / 'printable_colors.txt'`.

  Returns:
    float32 (K, 3).

  Raises:
    FileNotFoundError: no such file.
    ValueError: a line that is not three numbers in [0, 1], or no colour.
  """
  file = Path(path)
  if not file.is_file():
    raise FileNotFoundError(
        f"printable colour file {file} does not exist; pass an existing file.")
  rows = []
  for number, line in enumerate(file.read_text().splitlines(), 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    try:
      values = [float(v) for v in line.replace(",", " ").split()]
    except ValueError:
      values = []
    if len(values) != 3:
      raise ValueError(
          f"{file}:{number}: {line!r} is not three numbers 'r, g, b'; fix or "
          "remove the line.")
    rows.append(values)
  colors = np.asarray(rows, np.float32).reshape(-1, 3)
  if not len(colors):
    raise ValueError(f"{file} holds no colour; give one 'r, g, b' per line.")
  if colors.min() < 0 or colors.max() > 1 or not np.isfinite(colors).all():
    raise ValueError(f"printable colours of {file} hold values outside "
                     "[0, 1]; give RGB in [0, 1].")
  return colors
