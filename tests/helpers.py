"""Helpers shared by the tests: tiny configs and small closed-form models.

Test files import from here (never from one another); fixtures live in
conftest.py.
"""

from pathlib import Path
import re
import shutil
import subprocess

import jax.numpy as jnp
import numpy as np

from blurnet_jax.classes import IMAGE_SHAPE, NUM_CLASSES

D = int(np.prod(IMAGE_SHAPE))


def linear_apply(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def linear_params(seed=0, scale=0.05):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(rng.normal(0, scale, (D, NUM_CLASSES)),
                           jnp.float32),
          "b": jnp.asarray(rng.normal(0, 0.1, NUM_CLASSES), jnp.float32)}


def images(n=4, seed=1):
  rng = np.random.default_rng(seed)
  return rng.uniform(0.2, 0.8, (n,) + IMAGE_SHAPE).astype(np.float32)


def stripe_mask():
  mask = np.zeros((32, 32, 1), np.float32)
  mask[8:12, :] = 1.0
  return mask


def quantised_apply(params, x):
  """The linear model on an input rounded to 4 grey levels: its gradient is
  zero almost everywhere (a caricature of gradient masking)."""
  return linear_apply(params, jnp.round(x * 3.0) / 3.0)


def tiny_data(data, data_dir):
  """Points a data block at the session's 72-image synthetic set (4 train
  + 2 test images per class), so every test that trains shares it."""
  data.data_dir = str(data_dir)
  data.train_per_class = 4
  data.test_per_class = 2
  data.workers = 1
  return data


def tiny_train_config(variant: str, data_dir, **overrides):
  """A training config of a few seconds on a 72-image synthetic set."""
  from configs import train as train_configs  # pylint: disable=g-import-not-at-top
  config = train_configs.get_config(f"variant={variant},runlocal")
  tiny_data(config.data, data_dir)
  config.batch_size = 16
  config.num_train_steps = 8
  config.warmup_steps = 2
  config.log_every = 2
  config.eval_every = 4
  config.checkpoint_every = 4
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split(".")
    for p in path:
      target = target[p]
    target[leaf] = value
  return config


def tiny_robustness(rc):
  """Shrinks a robustness block to seconds. Every test that runs the
  checklist on a trained LisaCNN uses it, so that the compiled programs
  (same shapes, same settings) are shared within the session."""
  rc.victims, rc.pgd_steps = 4, 3
  rc.linf_budgets, rc.l2_budgets, rc.steps_curve = (0.25, 1.0), (2.0,), (1, 2)
  rc.square_queries, rc.eot_samples, rc.rp2_steps = 3, 1, 2
  rc.rp2_transforms = 1
  rc.angles, rc.distances = (0.0, 45.0), (32, 8)
  return rc


def browser() -> str:
  """The path of a headless Chromium; skips the calling test without one."""
  import pytest  # pylint: disable=g-import-not-at-top
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if path := shutil.which(name):
      return path
  pytest.skip("no chromium, chromium-browser or google-chrome on PATH; "
              "install one (apt-get install -y chromium) to run this test")


def browser_image_counts(browser: str, page: Path,
                          tmp: Path) -> tuple[int, int]:
  """Renders `page` plus a check script; returns (loaded, broken) images."""
  probe = tmp / f"probe_{page.stem}.html"
  probe.write_text(page.read_text(encoding="utf-8").replace(
      "</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
  result = subprocess.run(
      [browser, "--headless", "--disable-gpu", "--no-sandbox",
       f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000",
       "--dump-dom", probe.as_uri()],
      capture_output=True, text=True, timeout=120, check=False)
  match = re.search(r'id="img-check">loaded=(\d+) broken=(\d+)<',
                    result.stdout)
  assert match, f"no image check in the DOM; stderr: {result.stderr[-2000:]}"
  return int(match[1]), int(match[2])


_CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const out = document.createElement("pre");
  out.id = "img-check";
  out.textContent = `loaded=${ok} broken=${imgs.length - ok}`;
  document.body.appendChild(out);
});
</script>
"""


def fabricated_lisa_crops(folder: Path) -> None:
  """A LISA crops folder (lisa17_train_32x32.npz) of 17 classes x 3
  tracks x 4 crops: a colour per class, noise per crop."""
  rng = np.random.default_rng(0)
  x, y, track = [], [], []
  for c in range(17):
    for t in range(3):
      for _ in range(4):
        base = np.array([(37 * c) % 256, (91 * c) % 256, (53 * t) % 256])
        x.append(np.clip(base + rng.integers(-20, 21, (32, 32, 3)), 0, 255))
        y.append(c)
        track.append(f"vid{c}/track{t}")
  folder.mkdir()
  np.savez(folder / "lisa17_train_32x32.npz", x=np.asarray(x, np.uint8),
           y=np.asarray(y), track=np.asarray(track))
