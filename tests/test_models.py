"""Tests of blurnet_jax.models: LisaCNN variants, blur kernels, RP2 loading."""

import re

import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from PIL import Image
import pytest

from blurnet_jax import models
from blurnet_jax.data import rp2_assets
from blurnet_jax.ops import conv

RP2_DIR = rp2_assets.PACKAGED_DIR
RP2_NPZ = RP2_DIR / "rp2_lisa_cnn.npz"
STOP = 14
SPEED_LIMIT_45 = 12

# Params of the unfiltered RP2 network, counted by hand.
BASE_COUNT = ((8 * 8 * 3 * 64 + 64) + (6 * 6 * 64 * 128 + 128)
              + (5 * 5 * 128 * 128 + 128) + (512 * 18 + 18))


def _variants():
  """Every valid (where, kernel, size, padding, position)."""
  out = [dict(filter_where="none")]
  for where in ("input", "l1"):
    positions = ("after_relu", "before_relu") if where == "l1" else (
        "after_relu",)
    for kernel in ("box", "gaussian", "learned"):
      for size in (3, 5, 7):
        for padding in ("zeros", "reflect"):
          for position in positions:
            out.append(dict(filter_where=where, filter_kernel=kernel,
                            filter_size=size, filter_padding=padding,
                            filter_position=position))
  return out


def _variant_id(v):
  return "-".join(str(x) for x in v.values())


def _needs_rp2():
  assert RP2_NPZ.is_file(), f"the packaged RP2 assets lack {RP2_NPZ}"


def _rp2_victims() -> np.ndarray:
  files = sorted((RP2_DIR / "victim-set").glob("*.png"),
                 key=lambda p: int(re.search(r"\d+", p.name).group()))
  return np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32)
                   for f in files]) / 255.0


def _rp2_mask(name: str) -> np.ndarray:
  mask = np.asarray(Image.open(RP2_DIR / "masks" / name).convert("RGB"))
  return (mask > 127).astype(np.float32)


@pytest.fixture(scope="module")
def rp2_params():
  _needs_rp2()
  return rp2_assets.params_from_rp2(RP2_NPZ)


@pytest.fixture(scope="module")
def victims():
  _needs_rp2()
  return _rp2_victims()


def _predict(model, params, x):
  return np.asarray(jnp.argmax(model.apply({"params": params}, x), -1))


def _images(n, seed=0):
  # numpy randomness: eager jax.random compiles per shape, slow on small CPUs.
  return np.random.default_rng(seed).uniform(size=(n, 32, 32, 3)).astype(
      np.float32)


def _np_params(seed=0):
  """Unfiltered LisaCNN params, fan-in scaled normals, nonzero biases."""
  shapes = jax.eval_shape(models.LisaCNN().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  rng = np.random.default_rng(seed)

  def draw(leaf):
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 10
    return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in),
                       jnp.float32)

  return jax.tree.map(draw, shapes["params"])


# --------------------------------------------------------------- shapes


@pytest.mark.parametrize("variant", _variants(), ids=_variant_id)
def test_param_shapes_and_counts(variant):
  model = models.LisaCNN(**variant)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  shapes = jax.tree.map(lambda a: a.shape, variables["params"])
  expected = {
      "conv1": {"kernel": (8, 8, 3, 64), "bias": (64,)},
      "conv2": {"kernel": (6, 6, 64, 128), "bias": (128,)},
      "conv3": {"kernel": (5, 5, 128, 128), "bias": (128,)},
      "dense": {"kernel": (512, 18), "bias": (18,)},
  }
  count = BASE_COUNT
  where = variant["filter_where"]
  if where != "none" and variant["filter_kernel"] == "learned":
    k = variant["filter_size"]
    c = 3 if where == "input" else 64
    expected["blur"] = {"kernel": (k, k, 1, c)}
    count += k * k * c
  assert shapes == expected
  assert sum(a.size for a in jax.tree.leaves(variables["params"])) == count
  out = jax.eval_shape(
      lambda v, images: model.apply(v, images, return_features=True),
      variables, x)
  logits, feats = out
  assert logits.shape == (2, 18)
  assert {k: v.shape for k, v in feats.items()} == {
      "l1": (2, 16, 16, 64), "l1_filtered": (2, 16, 16, 64),
      "l2": (2, 6, 6, 128)}


def test_model_from_config():
  cfg = ml_collections.ConfigDict(dict(filter_where="l1", filter_size=5))
  model = models.model_from_config(cfg)
  assert (model.filter_where, model.filter_size, model.filter_kernel) == (
      "l1", 5, "box")
  assert models.model_from_config({}) == models.LisaCNN()
  with pytest.raises(ValueError, match="filter_sise"):
    models.model_from_config(dict(filter_sise=3))


@pytest.mark.parametrize("fields, match", [
    (dict(filter_where="L1"), "filter_where"),
    (dict(filter_kernel="median"), "filter_kernel"),
    (dict(filter_size=4), "filter_size"),
    (dict(filter_size=5.0), "filter_size"),
    (dict(filter_padding="edge"), "filter_padding"),
    (dict(filter_position="middle"), "filter_position"),
    (dict(filter_where="input", filter_position="before_relu"), "before_relu"),
])
def test_bad_fields(fields, match):
  with pytest.raises(ValueError, match=match):
    models.LisaCNN(**fields)


def test_bad_input_shape():
  model = models.LisaCNN()
  with pytest.raises(ValueError, match="32"):
    jax.eval_shape(model.init, jax.random.key(0),
                   jax.ShapeDtypeStruct((2, 28, 28, 3), jnp.float32))


# ------------------------------------------------- second implementation


def _reference_forward(p, x):
  """The RP2 network in plain lax, TF SAME written out as 3 px per side."""
  dn = ("NHWC", "HWIO", "NHWC")
  hi = lax.Precision.HIGHEST
  h = lax.conv_general_dilated(x, p["conv1"]["kernel"], (2, 2),
                               ((3, 3), (3, 3)), dimension_numbers=dn,
                               precision=hi)
  h = jnp.maximum(h + p["conv1"]["bias"], 0.0)
  h = lax.conv_general_dilated(h, p["conv2"]["kernel"], (2, 2), "VALID",
                               dimension_numbers=dn, precision=hi)
  h = jnp.maximum(h + p["conv2"]["bias"], 0.0)
  h = lax.conv_general_dilated(h, p["conv3"]["kernel"], (1, 1), "VALID",
                               dimension_numbers=dn, precision=hi)
  h = jnp.maximum(h + p["conv3"]["bias"], 0.0)
  h = h.reshape(h.shape[0], -1)
  return jnp.dot(h, p["dense"]["kernel"], precision=hi) + p["dense"]["bias"]


def test_none_matches_second_implementation_random_params():
  x = _images(4, seed=1)
  params = _np_params(seed=2)
  got = models.LisaCNN().apply({"params": params}, x)
  want = _reference_forward(params, x)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_none_matches_second_implementation_rp2(rp2_params, victims):
  got = models.LisaCNN().apply({"params": rp2_params}, victims)
  want = _reference_forward(rp2_params, jnp.asarray(victims))
  np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-4)


# ------------------------------------------------------------ blur kernels


@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_blur_kernel_sums_to_one(kind, size):
  kernel = np.asarray(models.blur_kernel(kind, size, 4))
  assert kernel.shape == (size, size, 1, 4)
  np.testing.assert_allclose(kernel.sum(axis=(0, 1, 2)), np.ones(4), rtol=1e-6)
  np.testing.assert_allclose(kernel, kernel[::-1, ::-1], rtol=1e-6)
  np.testing.assert_allclose(kernel, np.swapaxes(kernel, 0, 1), rtol=1e-6)
  if kind == "box":
    np.testing.assert_allclose(kernel, 1.0 / size**2, rtol=1e-6)
  else:
    c = size // 2
    assert kernel[c, c, 0, 0] == kernel.max()


def test_gaussian_kernel_by_hand():
  # OpenCV's rule, size 3: 0.3 * ((3 - 1) * 0.5 - 1) + 0.8 = 0.8.
  assert models.gaussian_sigma(3) == pytest.approx(0.8)
  assert models.gaussian_sigma(5) == pytest.approx(1.1)
  assert models.gaussian_sigma(7) == pytest.approx(1.4)
  e = np.exp(-1.0 / (2 * 0.8**2))
  taps = np.array([e, 1.0, e]) / (1.0 + 2 * e)
  np.testing.assert_allclose(models.blur_kernel("gaussian", 3, 1)[:, :, 0, 0],
                             np.outer(taps, taps), rtol=1e-6)


def test_blur_kernel_bad_args():
  with pytest.raises(ValueError, match="box"):
    models.blur_kernel("learned", 3, 2)
  with pytest.raises(ValueError, match="size"):
    models.blur_kernel("box", 2, 2)
  with pytest.raises(ValueError, match="channels"):
    models.blur_kernel("box", 3, 0)


@pytest.mark.parametrize("size", [3, 5, 7])
def test_zero_padding_constant_interior(size):
  x = jnp.full((1, 16, 16, 2), 0.7)
  y = np.asarray(models.depthwise_blur(
      x, models.blur_kernel("box", size, 2), padding="zeros"))
  assert y.shape == x.shape
  p = size // 2
  np.testing.assert_allclose(y[:, p:-p, p:-p], 0.7, rtol=1e-6)
  # The corner sees (p + 1)^2 of k^2 taps inside the map.
  np.testing.assert_allclose(y[0, 0, 0], 0.7 * (p + 1)**2 / size**2, rtol=1e-6)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("size", [3, 5, 7])
def test_reflect_padding_constant_everywhere(kind, size):
  x = jnp.full((2, 16, 16, 3), 0.3)
  y = models.depthwise_blur(x, models.blur_kernel(kind, size, 3),
                            padding="reflect")
  np.testing.assert_allclose(y, 0.3, rtol=1e-5)


def test_reflect_padding_by_hand():
  # 1-D view of a 3x3 box on rows [0, 1, 2]: the reflected border is row 1
  # (edge not repeated), so output row 0 averages rows (1, 0, 1).
  col = jnp.arange(3.0).reshape(1, 3, 1, 1) * jnp.ones((1, 3, 3, 1))
  y = models.depthwise_blur(col, models.blur_kernel("box", 3, 1),
                            padding="reflect")
  np.testing.assert_allclose(y[0, :, 1, 0], [2 / 3, 1.0, 4 / 3], rtol=1e-6)
  y = models.depthwise_blur(col, models.blur_kernel("box", 3, 1),
                            padding="zeros")
  np.testing.assert_allclose(y[0, :, 1, 0], [1 / 3, 1.0, 1.0], rtol=1e-6)


def test_depthwise_blur_bad_kernel():
  with pytest.raises(ValueError, match="kernel"):
    models.depthwise_blur(jnp.zeros((1, 8, 8, 3)),
                          models.blur_kernel("box", 3, 4))
  with pytest.raises(ValueError, match="padding"):
    models.depthwise_blur(jnp.zeros((1, 8, 8, 3)),
                          models.blur_kernel("box", 3, 3), padding="edge")


def test_channels_filtered_independently():
  x = np.random.default_rng(0).uniform(size=(1, 8, 8, 2)).astype(np.float32)
  kernel = models.blur_kernel("box", 3, 2)
  both = models.depthwise_blur(x, kernel)
  one = models.depthwise_blur(x[..., :1], kernel[..., :1])
  np.testing.assert_allclose(both[..., :1], one, rtol=1e-6)


# ------------------------------------------------------ filters in the model


def test_reflect_input_filter_keeps_constant_image():
  params = _np_params()
  x = jnp.full((1, 32, 32, 3), 0.4)
  base = models.LisaCNN().apply({"params": params}, x)
  reflect = models.LisaCNN(filter_where="input", filter_padding="reflect",
                           filter_size=5).apply({"params": params}, x)
  zeros = models.LisaCNN(filter_where="input", filter_padding="zeros",
                         filter_size=5).apply({"params": params}, x)
  np.testing.assert_allclose(reflect, base, atol=1e-5)
  assert np.max(np.abs(zeros - base)) > 1e-3


def test_learned_filter_init_through_model():
  model = models.LisaCNN(filter_where="l1", filter_kernel="learned",
                         filter_size=5)
  params = jax.jit(model.init)(jax.random.key(5), jnp.zeros((1, 32, 32, 3)))
  np.testing.assert_array_equal(params["params"]["blur"]["kernel"],
                                np.full((5, 5, 1, 64), 1 / 25, np.float32))


@pytest.mark.parametrize("where, position", [
    ("input", "after_relu"), ("l1", "after_relu"), ("l1", "before_relu")])
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_learned_filter_at_init_equals_box(where, position, padding):
  fields = dict(filter_where=where, filter_size=5, filter_padding=padding,
                filter_position=position)
  x = _images(3, seed=4)
  base = _np_params(seed=5)
  channels = 3 if where == "input" else 64
  # The blur init is a constant, so the rng is unused and this is cheap.
  blur = models.BlurFilter(kernel_kind="learned", size=5).init(
      jax.random.key(0), jnp.zeros((1, 16, 16, channels)))["params"]
  learned = models.LisaCNN(filter_kernel="learned", **fields)
  got, feats = learned.apply({"params": {**base, "blur": blur}}, x,
                             return_features=True)
  want, want_feats = models.LisaCNN(filter_kernel="box", **fields).apply(
      {"params": base}, x, return_features=True)
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(feats["l1_filtered"], want_feats["l1_filtered"],
                             atol=1e-6)


@pytest.mark.parametrize("where", ["none", "input", "l1"])
def test_features(where):
  model = models.LisaCNN(filter_where=where)
  x = _images(2, seed=6)
  params = _np_params(seed=7)
  logits, feats = model.apply({"params": params}, x, return_features=True)
  assert logits.shape == (2, 18)
  assert feats["l1"].shape == feats["l1_filtered"].shape == (2, 16, 16, 64)
  assert feats["l2"].shape == (2, 6, 6, 128)
  np.testing.assert_array_equal(logits, model.apply({"params": params}, x))
  if where == "l1":
    assert np.max(np.abs(feats["l1"] - feats["l1_filtered"])) > 1e-3
    np.testing.assert_allclose(
        feats["l1_filtered"],
        models.depthwise_blur(feats["l1"], models.blur_kernel("box", 3, 64)),
        atol=1e-6)
  else:
    np.testing.assert_array_equal(feats["l1"], feats["l1_filtered"])
  assert float(jnp.min(feats["l1"])) >= 0.0


def test_before_relu_differs_from_after_relu():
  params = _np_params()
  x = _images(2, seed=8)
  after = models.LisaCNN(filter_where="l1", filter_position="after_relu")
  before = models.LisaCNN(filter_where="l1", filter_position="before_relu")
  _, fa = after.apply({"params": params}, x, return_features=True)
  _, fb = before.apply({"params": params}, x, return_features=True)
  np.testing.assert_array_equal(fa["l1"], fb["l1"])
  assert np.max(np.abs(fa["l1_filtered"] - fb["l1_filtered"])) > 1e-4


def test_jit():
  model = models.LisaCNN(filter_where="l1", filter_kernel="learned",
                         filter_padding="reflect")
  x = _images(2, seed=9)
  params = {**_np_params(seed=10),
            "blur": {"kernel": models.blur_kernel("gaussian", 3, 64)}}
  eager = model.apply({"params": params}, x)
  jitted = jax.jit(model.apply)({"params": params}, x)
  np.testing.assert_allclose(eager, jitted, atol=1e-5)


# -------------------------------------------------------------- RP2 facts


def test_rp2_victims_are_stop(rp2_params, victims):
  assert victims.shape == (40, 32, 32, 3)
  pred = _predict(models.LisaCNN(), rp2_params, victims)
  np.testing.assert_array_equal(pred, np.full(40, STOP))


def test_rp2_camouflage_attack(rp2_params, victims):
  noise = np.asarray(rp2_assets.load_rp2_noise(RP2_NPZ,
                                           "noise_rectangles_camouflage"))
  mask = _rp2_mask("mask_l1loss_uniform_rectangles.png")
  x_adv = np.clip(victims + mask * np.clip(noise, -20, 20), 0, 1)
  model = models.LisaCNN()
  clean = _predict(model, rp2_params, victims)
  adv = _predict(model, rp2_params, x_adv)
  changed = clean != adv
  assert changed.sum() == 36
  np.testing.assert_array_equal(adv[changed], SPEED_LIMIT_45)


def test_rp2_poster_attack(rp2_params, victims):
  noise = np.asarray(rp2_assets.load_rp2_noise(RP2_NPZ, "noise_octagon_poster"))
  x_adv = np.clip(victims + _rp2_mask("octagon.png") * np.clip(noise, -20, 20),
                  0, 1)
  model = models.LisaCNN()
  changed = _predict(model, rp2_params, victims) != _predict(
      model, rp2_params, x_adv)
  assert changed.sum() == 40


def test_insert_filter_every_fixed_variant(rp2_params, victims):
  base = models.LisaCNN().apply({"params": rp2_params}, victims)
  for variant in _variants():
    if variant.get("filter_kernel") == "learned":
      continue
    model, params = models.insert_filter(rp2_params, **variant)
    assert params.keys() == rp2_params.keys()
    logits = model.apply({"params": params}, victims)
    assert logits.shape == (40, 18)
    assert np.all(np.isfinite(logits))
  model, params = models.insert_filter(rp2_params, filter_where="l1",
                                       filter_kernel="box", filter_size=5)
  assert params is not rp2_params
  filtered = model.apply({"params": params}, victims)
  assert np.max(np.abs(filtered - base)) > 1e-2


def test_insert_learned_filter(rp2_params, victims):
  model, params = models.insert_filter(
      rp2_params, filter_where="l1", filter_kernel="learned", filter_size=7)
  assert params["blur"]["kernel"].shape == (7, 7, 1, 64)
  np.testing.assert_allclose(params["blur"]["kernel"], 1 / 49, rtol=1e-6)
  box_model, box_params = models.insert_filter(
      rp2_params, filter_where="l1", filter_kernel="box", filter_size=7)
  np.testing.assert_allclose(
      model.apply({"params": params}, victims),
      box_model.apply({"params": box_params}, victims), atol=1e-5)
  _, params = models.insert_filter(
      rp2_params, filter_where="input", filter_kernel="learned")
  assert params["blur"]["kernel"].shape == (3, 3, 1, 3)


def test_insert_filter_bad_args(rp2_params):
  with pytest.raises(ValueError, match="filter_sise"):
    models.insert_filter(rp2_params, filter_sise=3)
  with pytest.raises(ValueError, match="variables"):
    models.insert_filter({"params": rp2_params}, filter_where="l1")
  _, learned = models.insert_filter(rp2_params, filter_where="l1",
                                    filter_kernel="learned")
  with pytest.raises(ValueError, match="blur"):
    models.insert_filter(learned, filter_where="l1")


# ---------------------------------------------------------- RP2 file errors


def test_params_from_rp2_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="rp2_lisa_cnn.npz"):
    rp2_assets.params_from_rp2(tmp_path / "nope.npz")


def _fake_rp2(**overrides):
  arrays = {
      "convolution2d_1_W": np.zeros((8, 8, 3, 64), np.float32),
      "convolution2d_1_b": np.zeros((64,), np.float32),
      "convolution2d_2_W": np.zeros((6, 6, 64, 128), np.float32),
      "convolution2d_2_b": np.zeros((128,), np.float32),
      "convolution2d_3_W": np.zeros((5, 5, 128, 128), np.float32),
      "convolution2d_3_b": np.zeros((128,), np.float32),
      "dense_1_W": np.zeros((512, 18), np.float32),
      "dense_1_b": np.zeros((18,), np.float32),
  }
  arrays.update(overrides)
  return {k: v for k, v in arrays.items() if v is not None}


def test_params_from_rp2_fake_ok(tmp_path):
  path = tmp_path / "ok.npz"
  np.savez(path, **_fake_rp2())
  params = rp2_assets.params_from_rp2(path)
  assert params["dense"]["kernel"].shape == (512, 18)
  assert params["conv1"]["kernel"].dtype == jnp.float32


@pytest.mark.parametrize("overrides, match", [
    (dict(dense_1_W=np.zeros((512, 10), np.float32)), "dense_1_W"),
    (dict(convolution2d_1_W=np.zeros((3, 8, 8, 64), np.float32)),
     "convolution2d_1_W"),
    (dict(convolution2d_2_b=None), "convolution2d_2_b"),
    (dict(dense_1_b=np.zeros((18,), np.int32)), "dense_1_b"),
])
def test_params_from_rp2_bad_file(tmp_path, overrides, match):
  path = tmp_path / "bad.npz"
  np.savez(path, **_fake_rp2(**overrides))
  with pytest.raises(ValueError, match=match) as info:
    rp2_assets.params_from_rp2(path)
  assert "not an RP2 LISA-CNN" in str(info.value)
  assert "\n" not in str(info.value)


def test_params_from_rp2_not_npz(tmp_path):
  path = tmp_path / "weights.npy"
  np.save(path, np.zeros(3))
  with pytest.raises(ValueError, match="npz"):
    rp2_assets.params_from_rp2(path)
  text = tmp_path / "weights.npz"
  text.write_text("hello")
  with pytest.raises(ValueError, match="npz"):
    rp2_assets.params_from_rp2(text)


def test_load_rp2_noise_errors(tmp_path):
  with pytest.raises(ValueError, match="name"):
    rp2_assets.load_rp2_noise(tmp_path / "x.npz", "noise_stickers")
  with pytest.raises(FileNotFoundError):
    rp2_assets.load_rp2_noise(tmp_path / "x.npz", "noise_octagon_poster")
  path = tmp_path / "n.npz"
  np.savez(path, noise_octagon_poster=np.zeros((32, 32), np.float32))
  with pytest.raises(ValueError, match="noise_octagon_poster"):
    rp2_assets.load_rp2_noise(path, "noise_octagon_poster")


@pytest.mark.parametrize("fields", [
    {},
    {"filter_where": "l1", "filter_kernel": "learned", "filter_size": 5},
    {"filter_where": "input", "filter_kernel": "gaussian", "filter_size": 3,
     "filter_padding": "reflect"},
])
def test_conv_impls_agree_on_logits_and_gradients(fields):
  """'s2d' (space-to-depth + im2col matmuls) is the same function as XLA's
  convolutions: logits, parameter gradients and input gradients."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((6, 32, 32, 3), np.float32))
  y = jnp.asarray(rng.integers(0, 18, 6))
  xla = models.LisaCNN(conv_impl="xla", **fields)
  s2d = models.LisaCNN(conv_impl="s2d", **fields)
  params = xla.init(jax.random.key(0), x[:1])["params"]

  def loss(model, p, images):
    logits = model.apply({"params": p}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  np.testing.assert_allclose(s2d.apply({"params": params}, x),
                             xla.apply({"params": params}, x),
                             rtol=1e-5, atol=2e-6)
  grads = [jax.grad(loss, argnums=(1, 2))(m, params, x) for m in (xla, s2d)]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6), *grads)


def test_conv2d_same_padding_matches_lax_for_odd_shapes():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.random((2, 15, 15, 4), np.float32))
  for k, stride in ((3, 2), (4, 2), (5, 1)):
    w = jnp.asarray(rng.normal(size=(k, k, 4, 5)), jnp.float32)
    for padding in ("SAME", "VALID"):
      want = jax.lax.conv_general_dilated(
          x, w, (stride, stride), padding,
          dimension_numbers=("NHWC", "HWIO", "NHWC"))
      got = conv.conv2d(x, w, stride=stride, padding=padding, impl="s2d")
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape,w_shape", [
    ((2, 3, 5, 7), (7, 4)),  # rows with leading axes @ one matrix
    ((3, 6, 7), (3, 7, 4)),  # a batch of matmuls
])
def test_matmul_backward_equals_autodiff(x_shape, w_shape):
  """`_matmul`'s hand-written VJP is the gradient of `x @ w`."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
  g = jnp.asarray(rng.normal(size=(x @ w).shape), jnp.float32)
  out, vjp = jax.vjp(conv._matmul, x, w)
  want_out, want_vjp = jax.vjp(jnp.matmul, x, w)
  np.testing.assert_allclose(out, want_out, rtol=1e-6, atol=1e-6)
  for got, want in zip(vjp(g), want_vjp(g)):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_winograd_equals_direct_convolution_with_gradients_and_vmap():
  """F(2x2, 3x3) is the VALID 3x3 correlation: values, both gradients, and
  vmapped over a stack of kernels (as when attacking stacked models)."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(3, 8, 10, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 5, 4)), jnp.float32)

  def direct(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

  want, want_vjp = jax.vjp(direct, x, kernel)
  got, got_vjp = jax.vjp(conv._winograd_conv3x3, x, kernel)
  assert got.shape == (3, 6, 8, 4)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  g = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  for a, b in zip(got_vjp(g), want_vjp(g)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
  kernels = jnp.stack([kernel, -2.0 * kernel])
  stacked = jax.vmap(conv._winograd_conv3x3, in_axes=(None, 0))(x, kernels)
  np.testing.assert_allclose(stacked[1], -2.0 * want, rtol=1e-5, atol=1e-4)


def test_s2d_conv2_takes_the_winograd_path():
  """LisaCNN's conv2 (6x6 stride 2 on 16x16) becomes a 3x3 stride-1
  convolution on the space-to-depth input, which runs as Winograd: its
  program has the (16, rows, channels) batched matmul and no 2304-wide
  im2col patches."""
  x = jax.ShapeDtypeStruct((4, 16, 16, 64), jnp.float32)
  w = jax.ShapeDtypeStruct((6, 6, 64, 128), jnp.float32)
  hlo = jax.jit(lambda x, w: conv.conv2d(
      x, w, stride=2, padding="VALID", impl="s2d")).lower(x, w).as_text()
  assert "16x36x256xf32" in hlo  # 4 images x 3x3 tiles, 256 channels
  assert "2304" not in hlo
