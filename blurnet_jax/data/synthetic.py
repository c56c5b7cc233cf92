"""A procedural, LISA-like traffic-sign crop generator (the built-in data set).

Every image is a 32x32 RGB crop as a sign detector would give it: one of the
18 classes' sign templates (`templates.py`) warped by a random homography
(scale and position jitter, in-plane rotation, viewing angle), painted with
worn paint and glare, composited over a procedural background (sky, foliage,
road, building, dark scenes), then the camera: shadows, partial occlusion,
illumination and colour casts, gamma, haze, a greyscale share, defocus and
motion blur, sensor noise, JPEG block artefacts, and the crop resized from
the sign's size in the frame (LISA's signs are mostly small, so crops are
often upscaled and soft). The framing is LISA's: a tight annotation box, the
sign's outline touching the crop's borders. `corruption` in [0, 1] scales
every camera corruption (0: clean renders of the same scenes).

This module renders labels into images and splits: the public API, the
chunks and their threads. Rendering is vectorised over a chunk of `CHUNK`
images with JAX: every random number and per-image choice of a chunk comes
from `synthetic_scene`, the per-pixel work from the jitted programs of
`synthetic_pixels`.

Determinism: image i of `render(labels, key)` lies in chunk c = i // CHUNK and
is a function of `jax.random.fold_in(key, c)`, its label and its position in
the chunk only. `generate_split` renders split `s` of seed `seed` from the
key `fold_in(key(seed), SPLITS[s])`, chunks running concurrently in threads
(jitted calls release the GIL; no processes are forked once JAX runs), so
the bytes never depend on the number of workers.
"""

from collections.abc import Iterator
import concurrent.futures
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.classes import NUM_CLASSES, STOP
from blurnet_jax.data import synthetic_pixels as pixels
from blurnet_jax.data import synthetic_scene as scene
from blurnet_jax.data import templates

SPLITS = {"train": 0, "test": 1, "victims": 2}
CHUNK = 512  # images per independently keyed chunk (one compiled shape)


def _render_chunk(labels, key, taps, offsets, counts, *, victim,
                  strength=1.0):
  """uint8 (B, 32, 32, 3) images of int32 labels (B,) from one key."""
  s = scene.scene_parameters(labels, scene.chunk_draws(key, labels.shape[0]),
                             offsets, counts, victim=victim, strength=strength)
  m = pixels.planes(s)
  bg = pixels.background(s, m)
  img = pixels.compose(s, m, pixels.sign(taps, m), bg, pixels.flip(bg))
  return pixels.camera(s, pixels.contrast(s, img))


@functools.lru_cache(maxsize=None)
def _bank_arrays():
  """The tap bank (a device array), per-class template offset and count."""
  _, per_class = templates.template_bank()
  counts = np.array([len(p) for p in per_class], np.int32)
  offsets = np.array([p[0] for p in per_class], np.int32)
  return jnp.asarray(pixels.tap_bank()), offsets, counts


def _check_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(f"labels must be a non-empty 1-d array, got shape "
                     f"{labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
  if labels.min() < 0 or labels.max() >= NUM_CLASSES:
    raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}, got "
                     f"{labels.min()}..{labels.max()}")
  return labels.astype(np.int32)


def _as_key(key_or_rng) -> jax.Array:
  """A typed jax PRNG key from a key, raw uint32 key data or a Generator."""
  if isinstance(key_or_rng, np.random.Generator):
    return jax.random.key(int(key_or_rng.integers(0, 2 ** 32)))
  dtype = getattr(key_or_rng, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
    if getattr(key_or_rng, "shape", None) != ():
      raise ValueError(f"expected a single PRNG key, got shape "
                       f"{key_or_rng.shape}")
    return key_or_rng
  if dtype == np.uint32 and np.shape(key_or_rng) == (2,):
    return jax.random.wrap_key_data(jnp.asarray(key_or_rng))
  raise ValueError(f"expected a jax PRNG key or np.random.Generator, got "
                   f"{type(key_or_rng).__name__}")


def _check_workers(workers) -> int:
  if workers is None:
    return default_workers()
  if not isinstance(workers, (int, np.integer)) or workers < 1:
    raise ValueError(f"workers must be an integer >= 1 or None, got "
                     f"{workers!r}")
  return int(workers)


def _render_one(labels: np.ndarray, key, c: int, victim: bool,
                strength: float = 1.0) -> np.ndarray:
  """Chunk c of a render: labels (n <= CHUNK,) padded to CHUNK, then cut."""
  n = labels.shape[0]
  padded = np.zeros(CHUNK, np.int32)
  padded[:n] = labels
  images = _render_chunk(padded, jax.random.fold_in(key, c), *_bank_arrays(),
                         victim=victim, strength=strength)
  return np.asarray(images)[:n]


_compiled = set()  # `victim` values whose programs are compiled


def _chunks(labels: np.ndarray, key, victim: bool, workers: int,
            strength: float = 1.0):
  """Yields the rendered chunks of `labels`, in order, from `workers` threads.

  Jitted calls release the GIL, so threads render chunks concurrently; at most
  2 * workers chunks are in flight. The first chunk ever rendered (of each
  `victim`) is rendered alone, so that one thread compiles while the others
  wait instead of compiling the same programs again.
  """
  jobs = [(labels[c * CHUNK:(c + 1) * CHUNK], key, c, victim, strength)
          for c in range((labels.shape[0] + CHUNK - 1) // CHUNK)]
  if victim not in _compiled:
    _bank_arrays()
    yield _render_one(*jobs.pop(0))
    _compiled.add(victim)
  if workers == 1 or len(jobs) <= 1:
    yield from (_render_one(*job) for job in jobs)
    return
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = []
    for job in jobs:
      pending.append(pool.submit(_render_one, *job))
      if len(pending) >= 2 * workers:
        yield pending.pop(0).result()
    for future in pending:
      yield future.result()


# ---- public API ----------------------------------------------------------------


def render(labels: np.ndarray, key_or_rng, *, victim: bool = False,
           workers: int | None = None, corruption: float = 1.0) -> np.ndarray:
  """Renders one synthetic crop per label.

  Image i is a function of `jax.random.fold_in(key, i // CHUNK)`, its label
  and its position i % CHUNK only: a prefix of `labels` renders the same
  prefix of images, and the bytes do not depend on `workers`. Every call
  renders whole chunks of CHUNK images (one compiled shape), so a small batch
  costs as much as CHUNK images. The first call compiles (seconds).

  Args:
    labels: int (B,) class indices in the project's order, B >= 1.
    key_or_rng: the only source of randomness: a jax PRNG key
      (`jax.random.key(seed)`, or raw uint32 (2,) key data); an
      `np.random.Generator` is also accepted and draws a key seed from it.
    victim: a victim-set look (well framed, unoccluded signs).
    workers: threads rendering chunks concurrently (None: one per core).
    corruption: strength of the camera corruptions in [0, 1] (blur, low
      resolution, noise, JPEG, haze, shadow, occluder): 0 renders clean
      signs, 1 the default look; the scenes are otherwise the same.

  Returns:
    uint8 (B, 32, 32, 3) images.
  """
  labels = _check_labels(labels)
  key = _as_key(key_or_rng)
  return np.concatenate(list(_chunks(labels, key, victim,
                                     _check_workers(workers),
                                     check_corruption(corruption))))


def check_corruption(value) -> float:
  """`value` as a float in [0, 1], or a one-line ValueError."""
  if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
      or not 0.0 <= float(value) <= 1.0):
    raise ValueError(f"corruption must be a number in [0, 1] (0 = clean "
                     f"renders, 1 = the default camera), got {value!r}")
  return float(value)


def _split_key(seed: int, split: str) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), SPLITS[split])


#: Approximate counts of LISA's annotation tags for the 17 named classes,
#: in class order 1..17, as recalled from the data set's paper (Mogelmose et
#: al., 2012; this machine has no LISA to count them): stop dominates, then
#: pedestrianCrossing and signalAhead. `lisa_annotations.read_annotations`
#: on a LISA folder gives the exact counts. Only their ratios are used
#: (`class_weights`).
LISA_TAG_COUNTS: tuple[int, ...] = (
    294, 331, 210, 266, 1085, 133, 105, 925, 349, 140, 538, 141, 132, 1821,
    168, 92, 236)
BALANCES: tuple[str, ...] = ("uniform", "lisa")


def class_weights(balance: str) -> np.ndarray:
  """float64 (18,) shares of the classes in a training split, summing to 1.

  'uniform': 1/18 each. 'lisa': class 0 keeps its 1/18, the 17 named classes
  share the rest in the ratios of `LISA_TAG_COUNTS` (stop dominates).
  """
  if balance not in BALANCES:
    raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got "
                     f"{balance!r}")
  if balance == "uniform":
    return np.full(NUM_CLASSES, 1 / NUM_CLASSES)
  counts = np.asarray(LISA_TAG_COUNTS, np.float64)
  return np.concatenate([[1 / NUM_CLASSES],
                         counts / counts.sum() * (1 - 1 / NUM_CLASSES)])


def split_labels(num_per_class: int, balance: str = "uniform") -> np.ndarray:
  """int64 (num_per_class * 18,) labels of a split, classes interleaved.

  'uniform': example i has label i % 18. Otherwise class c gets
  round(total * share_c) examples (at least one; the largest absorbs the
  rounding), and the k-th example of class c sits at position
  (k + 0.5) / n_c of the split, so that every chunk holds every class in
  about its share.
  """
  total = int(num_per_class) * NUM_CLASSES
  if balance == "uniform":
    class_weights(balance)  # checks the name
    return np.arange(total, dtype=np.int64) % NUM_CLASSES
  n = np.maximum(np.rint(total * class_weights(balance)).astype(np.int64), 1)
  n[np.argmax(n)] += total - n.sum()
  labels = np.concatenate([np.full(k, c) for c, k in enumerate(n)])
  place = np.concatenate([(np.arange(k) + 0.5) / k for k in n])
  return labels[np.argsort(place, kind="stable")].astype(np.int64)


def generate_split(num_per_class: int, *, seed: int, split: str,
                   workers: int | None = None, corruption: float = 1.0,
                   balance: str = "uniform",
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Yields (images uint8 (n,32,32,3), labels int64 (n,)) chunks of a split.

  The split holds num_per_class * 18 examples; with `balance='uniform'`
  example i has label i % 18 (exact class balance), with 'lisa' the classes
  have LISA-like shares (`split_labels`). Chunk c holds examples
  [c * CHUNK, (c + 1) * CHUNK) and is rendered from the key
  fold_in(fold_in(key(seed), SPLITS[split]), c), so the bytes are the same
  for any `workers` (threads rendering chunks concurrently; None: one per
  core) and on every run. `corruption` in [0, 1] scales the camera
  corruptions (`render`).
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
  if (not isinstance(num_per_class, (int, np.integer))
      or isinstance(num_per_class, bool) or num_per_class < 1):
    raise ValueError(f"num_per_class must be an integer >= 1, got "
                     f"{num_per_class!r}")
  workers = _check_workers(workers)
  corruption = check_corruption(corruption)
  labels = split_labels(num_per_class, balance)
  chunks = _chunks(labels.astype(np.int32), _split_key(seed, split), False,
                   workers, corruption)
  for c, images in enumerate(chunks):
    yield images, labels[c * CHUNK:(c + 1) * CHUNK]


def default_workers() -> int:
  """Rendering threads by default: one per available core, at most 8."""
  return max(1, min(len(os.sched_getaffinity(0)), 8))


def synthetic_victims(n: int = 40, *, seed: int = 0) -> np.ndarray:
  """A victim set of `n` synthetic stop signs under varied conditions.

  Well framed, unoccluded stop signs (`render(..., victim=True)`) from the
  key fold_in(key(seed), SPLITS['victims']); victims(n) is a prefix of
  victims(m) for n < m.

  Returns:
    float32 (n, 32, 32, 3) in [0, 1], the layout of `load_victims`.
  """
  if not isinstance(n, (int, np.integer)) or n < 1:
    raise ValueError(f"need at least one victim, got n={n!r}")
  images = render(np.full(n, STOP), _split_key(seed, "victims"), victim=True)
  return images.astype(np.float32) / 255.0


def compile_seconds(seed: int = 0) -> float:
  """Seconds the renderer spends compiling: the first chunk rendered in this
  process minus a second, compiled one (for `bench.render.render_speed`)."""
  labels = np.arange(CHUNK, dtype=np.int32) % NUM_CLASSES
  times = []
  for c in range(2):  # the first call compiles, the second does not
    start = time.perf_counter()
    _render_one(labels, jax.random.key(seed), c, False)
    times.append(time.perf_counter() - start)
  _compiled.add(False)
  return times[0] - times[1]
