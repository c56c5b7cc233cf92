"""Tests of the RP2 attack, its transforms and its metrics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blurnet_jax.attacks import transforms
from blurnet_jax.attacks import (
    DEFAULT_PRINTABLE_COLORS,
    RP2Config,
    TransformConfig,
    apply_perturbation,
    attack_success_rate,
    init_noise,
    l2_dissimilarity,
    nps,
    random_transform,
    rp2_attack,
    rp2_loss,
    predictions_under_transforms,
    success_under_transforms,
    targeted_success,
)
from blurnet_jax.classes import STOP
from blurnet_jax.data.masks import get_mask, load_mask
from blurnet_jax.data.victims import load_victims
from blurnet_jax.data.rp2_assets import (load_printable_colors,
                                         load_rp2_noise, params_from_rp2)
from blurnet_jax.models import LisaCNN

TARGET = 12  # speedLimit45, the authors' target.
_MODEL = LisaCNN()


def lisa_apply(params, x):
  """One module-level apply_fn, so every attack here shares its compile."""
  return _MODEL.apply({"params": params}, x)


def linear_apply(params, x):
  """A tiny differentiable classifier for the fast gradient tests."""
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


@functools.partial(jax.jit, static_argnums=0)
def predict(apply_fn, params, x):
  return jnp.argmax(apply_fn(params, x), axis=-1)


transform = jax.jit(random_transform, static_argnums=2)


@pytest.fixture(scope="module")
def rp2(rp2_dir):
  npz = rp2_dir / "rp2_lisa_cnn.npz"
  return {
      "params": params_from_rp2(npz),
      "victims": load_victims(rp2_dir / "victim-set"),
      "octagon": load_mask(rp2_dir / "masks" / "octagon.png", channels=1),
      "rectangles": load_mask(
          rp2_dir / "masks" / "mask_l1loss_uniform_rectangles.png",
          channels=3),
      "noise_rectangles": load_rp2_noise(npz, "noise_rectangles_camouflage"),
      "noise_octagon": load_rp2_noise(npz, "noise_octagon_poster"),
  }


@pytest.fixture(scope="module")
def linear():
  k1, k2 = jax.random.split(jax.random.key(1))
  params = {"w": 0.05 * jax.random.normal(k1, (32 * 32 * 3, 18)),
            "b": jnp.zeros((18,))}
  images = jax.random.uniform(k2, (3, 32, 32, 3), minval=0.1, maxval=0.7)
  return params, images


# --------------------------------------------- (a) the authors' results --


def test_authors_perturbations_reproduce_readme_facts(rp2):
  x, params = rp2["victims"], rp2["params"]
  clean = predict(lisa_apply, params, x)
  np.testing.assert_array_equal(clean, np.full(40, STOP))

  adv = apply_perturbation(x, rp2["rectangles"], rp2["noise_rectangles"])
  pred = np.asarray(predict(lisa_apply, params, adv))
  assert (pred != STOP).sum() == 36
  assert set(pred[pred != STOP]) == {TARGET}
  assert float(attack_success_rate(clean, pred)) == pytest.approx(0.9)
  assert float(targeted_success(pred, TARGET)) == pytest.approx(0.9)

  adv = apply_perturbation(x, rp2["octagon"], rp2["noise_octagon"])
  pred = predict(lisa_apply, params, adv)
  assert float(attack_success_rate(clean, pred)) == 1.0
  # Without transforms, success under K "transforms" is plain success.
  rate = success_under_transforms(jax.random.key(0), lisa_apply, params, adv,
                                  TARGET, transforms=TransformConfig.none(),
                                  num_samples=2)
  assert float(rate) == 1.0


def test_apply_perturbation_formula_and_inverse_mask():
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  noise = 30.0 * jax.random.normal(jax.random.key(1), (32, 32, 3))
  mask = get_mask("octagon")
  expected = np.clip(np.asarray(x) + np.asarray(mask)
                     * np.clip(np.asarray(noise), -20, 20), 0, 1)
  got = jax.jit(apply_perturbation)(x, mask, noise)
  np.testing.assert_allclose(got, expected, atol=1e-6)
  cfg = RP2Config(inverse_mask=True, setpoint=0.25)
  small = jnp.full((32, 32, 3), 0.1)
  got = apply_perturbation(x, mask, small, cfg)
  m = np.asarray(mask)
  expected = np.asarray(x) * (1 - m) + (0.25 + 0.1) * m
  np.testing.assert_allclose(got, expected, atol=1e-6)


# ---------------------------------------------------- (b) metrics, NPS --


def test_l2_dissimilarity_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(5, 32, 32, 3)).astype(np.float32)
  x_adv = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
  expected = np.mean([np.linalg.norm(a - b) / np.linalg.norm(b)
                      for a, b in zip(x, x_adv)])
  got = jax.jit(l2_dissimilarity)(x, x_adv)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  assert float(l2_dissimilarity(x, x)) == 0.0


def test_success_metrics_by_hand():
  clean = np.array([14, 14, 14, 14])
  adv = np.array([12, 14, 3, 12])
  assert float(attack_success_rate(clean, adv)) == 0.75
  assert float(targeted_success(adv, 12)) == 0.5


def test_nps_matches_numpy():
  rng = np.random.default_rng(1)
  image = rng.uniform(size=(4, 5, 3)).astype(np.float32)
  colors = rng.uniform(size=(6, 3)).astype(np.float32)
  mask = (rng.uniform(size=(4, 5, 1)) > 0.5).astype(np.float32)
  expected = 0.0
  for i in range(4):
    for j in range(5):
      if mask[i, j, 0]:
        expected += np.prod([np.linalg.norm(image[i, j] - c) for c in colors])
  got = jax.jit(lambda a, c, m: nps(a, c, mask=m))(image, colors, mask)
  assert float(got) == pytest.approx(expected, rel=1e-5)
  # A pixel on a printable colour scores 0 and has a finite gradient.
  on = jnp.broadcast_to(jnp.asarray(DEFAULT_PRINTABLE_COLORS[3]), (1, 1, 3))
  assert float(nps(on)) == 0.0
  assert np.all(np.isfinite(jax.grad(nps)(on)))


def test_load_printable_colors(rp2_dir, tmp_path):
  colors = load_printable_colors(rp2_dir / "printable_colors.txt")
  assert colors.shape == (30, 3) and colors.min() >= 0 and colors.max() <= 1
  bad = tmp_path / "bad.txt"
  bad.write_text("0.1,0.2\n")
  with pytest.raises(ValueError, match="not three numbers"):
    load_printable_colors(bad)


# ------------------------------------------------------ (c) transforms --

SINGLE_TRANSFORMS = {
    "rotation": TransformConfig(rotation_deg=15.0),
    "scale": TransformConfig(scale=(0.8, 1.2)),
    "translate": TransformConfig(translate_px=3.0),
    "perspective": TransformConfig(perspective_deg=30.0),
    "brightness": TransformConfig(brightness=0.2),
    "contrast": TransformConfig(contrast=0.3),
    "colour": TransformConfig(colour=0.3),
    "blur": TransformConfig(blur_sigma=1.0),
    "noise": TransformConfig(noise_std=0.05),
    "physical": TransformConfig.physical(),
}


def test_none_is_identity():
  x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
  out = transform(jax.random.key(3), x, TransformConfig.none())
  np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("name", sorted(SINGLE_TRANSFORMS))
def test_transform_changes_images_and_passes_gradients(name, linear):
  params, images = linear
  tcfg = SINGLE_TRANSFORMS[name]
  # Eager on purpose: the ops compile once for all cases, faster than one
  # jit per transform config.
  out = random_transform(jax.random.key(0), images, tcfg)
  assert out.shape == images.shape
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert float(jnp.abs(out - images).max()) > 1e-3
  # Per-image draws: two images of the same content transform differently.
  twin = random_transform(jax.random.key(0), jnp.stack([images[0]] * 2),
                          tcfg)
  assert float(jnp.abs(twin[0] - twin[1]).max()) > 1e-4
  # The classic broken-EOT bug: a transform that cuts the gradient.
  cfg = RP2Config(transforms=tcfg, lambda_norm=0.0)
  noise = init_noise(jax.random.key(2), (32, 32, 3), cfg) * 0.2
  mask = get_mask("octagon")
  grad = jax.grad(rp2_loss)(noise, linear_apply, params, images, mask, TARGET,
                            jax.random.key(4), cfg=cfg)
  assert np.all(np.isfinite(grad))
  assert float(jnp.abs(grad).sum()) > 0


@pytest.mark.parametrize("padding,mode", [("zeros", "constant"),
                                          ("edge", "nearest")])
def test_warp_matches_map_coordinates(padding, mode):
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  tcfg = TransformConfig(rotation_deg=20.0, perspective_deg=30.0,
                         scale=(0.7, 1.3), translate_px=4.0, padding=padding)
  forward = transforms._homographies(jax.random.key(1), 2, tcfg)
  inverse = np.linalg.inv(np.asarray(forward, np.float64))
  np.testing.assert_allclose(transforms._inverse_3x3(forward), inverse,
                             atol=1e-5)
  ys, xs = np.meshgrid(np.arange(32) - 15.5, np.arange(32) - 15.5,
                       indexing="ij")
  src = inverse @ np.stack([xs, ys, np.ones_like(xs)]).reshape(3, -1)
  src_x = (src[:, 0] / src[:, 2] + 15.5).reshape(2, 32, 32)
  src_y = (src[:, 1] / src[:, 2] + 15.5).reshape(2, 32, 32)
  expected = np.stack([np.stack([
      jax.scipy.ndimage.map_coordinates(x[i, :, :, c], [src_y[i], src_x[i]],
                                        order=1, mode=mode)
      for c in range(3)], -1) for i in range(2)])
  got = transforms._warp(x, forward, padding)
  np.testing.assert_allclose(got, expected, atol=2e-5)


def test_blur_matches_numpy():
  x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 32, 32, 3)))
  key = jax.random.key(1)
  got = np.asarray(transforms._gaussian_blur(key, jnp.asarray(x), 1.0))
  sigmas = np.asarray(jax.random.uniform(key, (2,), maxval=1.0))
  r = np.arange(-3, 4)  # radius ceil(3 * 1.0)
  for image, out, sigma in zip(x, got, sigmas):
    taps = np.exp(-r**2 / (2 * max(sigma, 1e-3)**2))
    taps /= taps.sum()
    padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="edge")
    expected = sum(taps[a] * taps[b] * padded[a:a + 32, b:b + 32]
                   for a in range(7) for b in range(7))
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_geometric_transforms_keep_a_centred_sign():
  # A small rotation/perspective keeps most of a constant image's centre.
  x = jnp.full((2, 32, 32, 3), 0.5)
  out = random_transform(jax.random.key(0), x, TransformConfig(
      rotation_deg=10.0, perspective_deg=20.0, padding="edge"))
  np.testing.assert_allclose(out, x, atol=1e-5)


# ------------------------------------------------ (d) attack on LISA-CNN --


def test_short_poster_attack_reaches_target(rp2):
  cfg = RP2Config(steps=20)
  out = rp2_attack(lisa_apply, rp2["params"], rp2["victims"], rp2["octagon"],
                   TARGET, jax.random.key(0), cfg=cfg)
  assert out["noise"].shape == (32, 32, 3)
  assert out["losses"].shape == (20,) and out["success"].shape == (20,)
  assert float(jnp.abs(out["noise"]).max()) <= 20.0
  pred = predict(lisa_apply, rp2["params"], out["adversarial"])
  # The victims start as stop (success 0 at step 0); a short poster attack
  # on the authors' model reaches the target on nearly all of them while
  # its loss falls.
  assert float(targeted_success(pred, TARGET)) >= 0.9
  assert float(out["success"][0]) == 0.0
  losses = np.asarray(out["losses"])
  assert np.mean(np.diff(losses)) < 0
  assert losses[-1] < 0.2 * losses[0]


def test_untargeted_attack_with_transforms_and_nps_runs(linear):
  params, x = linear
  tcfg = TransformConfig.physical()
  cfg = RP2Config(steps=3, targeted=False, transforms=tcfg, num_transforms=2,
                  nps_weight=1e-3)
  out = rp2_attack(linear_apply, params, x, get_mask("octagon"), STOP,
                   jax.random.key(0), cfg=cfg)
  assert np.all(np.isfinite(out["losses"]))
  assert np.all(np.isfinite(out["noise"]))
  rate = success_under_transforms(jax.random.key(1), linear_apply, params,
                                  out["adversarial"], STOP, transforms=tcfg,
                                  num_samples=3, targeted=False)
  assert 0.0 <= float(rate) <= 1.0


def test_progress_hook_reports_steps_and_changes_nothing(linear):
  params, x = linear
  cfg = RP2Config(steps=7)
  seen = []
  hooked = rp2_attack(linear_apply, params, x, get_mask("octagon"), TARGET,
                      jax.random.key(3), cfg=cfg, on_step=seen.append,
                      report_every=3)
  jax.effects_barrier()
  plain = rp2_attack(linear_apply, params, x, get_mask("octagon"), TARGET,
                     jax.random.key(3), cfg=cfg)
  assert sorted(int(s) for s in seen) == [3, 6, 7]  # every 3rd and the last
  np.testing.assert_array_equal(hooked["noise"], plain["noise"])
  with pytest.raises(ValueError, match="report_every"):
    rp2_attack(linear_apply, params, x, get_mask("octagon"), TARGET,
               jax.random.key(3), cfg=cfg, report_every=0)


def test_success_under_transforms_counts_the_predictions(linear):
  params, x = linear
  tcfg = TransformConfig.physical()
  pred = predictions_under_transforms(jax.random.key(1), linear_apply, params,
                                      x, transforms=tcfg, num_samples=3)
  assert pred.shape == (3, len(x))
  for target in (0, 3):
    rate = success_under_transforms(jax.random.key(1), linear_apply, params,
                                    x, target, transforms=tcfg, num_samples=3)
    np.testing.assert_allclose(rate, np.mean(np.asarray(pred) == target))


# ------------------------------------------------------------- (e) vmap --


def test_vmap_over_targets_equals_separate_attacks(rp2):
  cfg = RP2Config(steps=3)
  x, params, mask = rp2["victims"][:4], rp2["params"], rp2["octagon"]
  key = jax.random.key(5)
  targets = jnp.array([1, 12, 17])
  batched = jax.vmap(
      lambda t: rp2_attack(lisa_apply, params, x, mask, t, key, cfg=cfg))(
          targets)
  assert batched["noise"].shape == (3, 32, 32, 3)
  for i, t in enumerate([1, 12, 17]):
    single = rp2_attack(lisa_apply, params, x, mask, t, key, cfg=cfg)
    np.testing.assert_allclose(batched["noise"][i], single["noise"],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(batched["losses"][i], single["losses"],
                               rtol=1e-4, atol=1e-5)
  assert not np.allclose(batched["noise"][0], batched["noise"][1])


def test_vmap_over_stacked_models(linear):
  params, images = linear
  other = jax.tree.map(lambda a: -a, params)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
  cfg = RP2Config(steps=3)
  mask = get_mask("octagon")
  key = jax.random.key(0)
  batched = jax.vmap(lambda p: rp2_attack(linear_apply, p, images, mask,
                                          TARGET, key, cfg=cfg))(stacked)
  for i, p in enumerate([params, other]):
    single = rp2_attack(linear_apply, p, images, mask, TARGET, key, cfg=cfg)
    np.testing.assert_allclose(batched["noise"][i], single["noise"],
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------- (f) errors --


def test_bad_inputs_raise(linear):
  params, images = linear
  mask = get_mask("octagon")
  key = jax.random.key(0)
  cfg = RP2Config(steps=1)
  with pytest.raises(ValueError, match=r"mask must have shape \(32, 32, 1\)"):
    rp2_attack(linear_apply, params, images, jnp.ones((16, 16, 1)), TARGET,
               key, cfg=cfg)
  with pytest.raises(ValueError, match=r"mask must have shape"):
    rp2_attack(linear_apply, params, images, jnp.ones((32, 32)), TARGET, key,
               cfg=cfg)
  with pytest.raises(ValueError, match=r"needs a PRNG key"):
    rp2_attack(linear_apply, params, images, mask, TARGET, None, cfg=cfg)
  with pytest.raises(TypeError, match=r"key"):
    rp2_attack(linear_apply, params, images, mask, TARGET, cfg=cfg)  # pylint: disable=no-value-for-parameter
  with pytest.raises(ValueError, match=r"target=18 is out of range"):
    rp2_attack(linear_apply, params, images, mask, 18, key, cfg=cfg)
  with pytest.raises(ValueError, match=r"target=-1 is out of range"):
    rp2_attack(linear_apply, params, images, mask, jnp.array(-1), key,
               cfg=cfg)
  with pytest.raises(ValueError, match=r"images must have shape \(N, 32"):
    rp2_attack(linear_apply, params, images[0], mask, TARGET, key, cfg=cfg)
  with pytest.raises(ValueError, match=r"images must have shape \(N, 32"):
    apply_perturbation(jnp.zeros((2, 28, 28, 3)), mask, jnp.zeros((32, 32, 3)))
  with pytest.raises(ValueError, match=r"noise must have shape"):
    apply_perturbation(images, mask, jnp.zeros((32, 32, 1)))
  # The config knows no model: it admits any class of the largest label
  # space (GTSRB's 43); the attack checks the target against the model.
  RP2Config(target=42)
  with pytest.raises(ValueError, match=r"RP2Config.target=43"):
    RP2Config(target=43)
  with pytest.raises(ValueError, match=r"scale=.*0 < lo <= hi"):
    TransformConfig(scale=(1.2, 0.8))
  with pytest.raises(ValueError, match=r"padding='wrap'"):
    TransformConfig(padding="wrap")


# ------------------------------------------- slow: the authors' poster --


@pytest.mark.slow
def test_poster_attack_with_authors_settings(rp2):
  # The authors' settings reach the target on (nearly) every victim, at the
  # distortion of the authors' own poster perturbation (computed below).
  cfg = RP2Config()  # 300 steps, lr 0.1, lambda 0.02, target 12.
  out = rp2_attack(lisa_apply, rp2["params"], rp2["victims"], rp2["octagon"],
                   TARGET, jax.random.key(0), cfg=cfg)
  pred = predict(lisa_apply, rp2["params"], out["adversarial"])
  assert float(targeted_success(pred, TARGET)) >= 0.95
  assert float(jnp.min(out["success"][5:])) >= 0.95
  authors = l2_dissimilarity(rp2["victims"], apply_perturbation(
      rp2["victims"], rp2["octagon"], rp2["noise_octagon"]))
  got = l2_dissimilarity(rp2["victims"], out["adversarial"])
  assert float(got) == pytest.approx(float(authors), abs=0.01)


@pytest.mark.slow
def test_camouflage_attack_with_authors_settings(rp2):
  # The slides' baseline (90% to target 12) within 5 points, at the
  # distortion of the authors' own camouflage perturbation (computed below).
  cfg = RP2Config(steps=1000)
  out = rp2_attack(lisa_apply, rp2["params"], rp2["victims"],
                   rp2["rectangles"], TARGET, jax.random.key(0), cfg=cfg)
  pred = predict(lisa_apply, rp2["params"], out["adversarial"])
  assert float(targeted_success(pred, TARGET)) >= 0.85
  authors = l2_dissimilarity(rp2["victims"], apply_perturbation(
      rp2["victims"], rp2["rectangles"], rp2["noise_rectangles"]))
  got = l2_dissimilarity(rp2["victims"], out["adversarial"])
  assert float(got) == pytest.approx(float(authors), abs=0.01)
