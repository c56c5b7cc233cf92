"""LISA-CNN, the RP2 victim model, with BlurNet's optional low-pass filter.

One Flax module, `LisaCNN`, covers every variant of the project:

* the undefended network of the RP2 authors (`filter_where='none'`), which
  `data.rp2_assets` loads from their converted checkpoint;
* a fixed blur (box or Gaussian, constants, not parameters) on the input or on
  the layer-1 feature maps, which `insert_filter` adds to trained parameters
  without retraining (Table 1 of the BlurNet slides);
* a learned depthwise filter (parameters under `blur`, initialised as the box
  filter) on the input or on the layer-1 maps, trained with
  `blurnet_jax.losses.linf_penalty` (Table 2).

Architecture (cleverhans `cnn_model`, as RP2 used it), NHWC, input in [0, 1]:
conv 64 8x8 stride 2 SAME -> ReLU -> conv 128 6x6 stride 2 VALID -> ReLU ->
conv 128 5x5 stride 1 VALID -> ReLU -> flatten (H, W, C) -> dense 18.
With a 32x32 input, TensorFlow's and XLA's SAME both pad conv1 by 3 pixels on
every side, so the RP2 weights give the same logits here as in TensorFlow.

Typical use:

  params = load_rp2_assets().params  # blurnet_jax.data.rp2_assets
  model, params = insert_filter(params, filter_where="l1", filter_size=5)
  logits = apply_fn_for(model)(params, images)  # (N, 18)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools
import numbers
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from blurnet_jax.classes import IMAGE_SHAPE, NUM_CLASSES, label_space
from blurnet_jax.ops.conv import CONV_IMPLS, Conv

Params = dict[str, dict[str, jax.Array]]

FILTER_WHERE: tuple[str, ...] = ("none", "input", "l1")
FILTER_KERNELS: tuple[str, ...] = ("box", "gaussian", "learned")
FIXED_KERNELS: tuple[str, ...] = ("box", "gaussian")
FILTER_SIZES: tuple[int, ...] = (3, 5, 7)
FILTER_PADDINGS: tuple[str, ...] = ("zeros", "reflect")
FILTER_POSITIONS: tuple[str, ...] = ("after_relu", "before_relu")
# The fields of `LisaCNN` that a config may set (see `model_from_config`).
MODEL_FIELDS: tuple[str, ...] = (
    "filter_where",
    "filter_kernel",
    "filter_size",
    "filter_padding",
    "filter_position",
    "conv_impl",
    "num_classes",
)

L1_CHANNELS: int = 64  # Feature maps of conv1, what an 'l1' filter sees.
L1_SHAPE: tuple[int, int, int] = (16, 16, L1_CHANNELS)
L2_SHAPE: tuple[int, int, int] = (6, 6, 128)

def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
  if isinstance(value, bool) or value not in choices:
    raise ValueError(
        f"{field}={value!r} is not supported; use one of {choices}.")


def _check_size(field: str, size: Any) -> None:
  if (not isinstance(size, numbers.Integral) or isinstance(size, bool)
      or int(size) not in FILTER_SIZES):
    raise ValueError(
        f"{field}={size!r} is not supported; use an int in {FILTER_SIZES}.")


def gaussian_sigma(size: int) -> float:
  """OpenCV's default Gaussian sigma for an odd kernel `size`.

  `sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8`, the rule that
  `cv2.getGaussianKernel(size, sigma<=0)` documents: 0.8, 1.1, 1.4 for sizes
  3, 5, 7.

  Args:
    size: kernel width, one of `FILTER_SIZES`.

  Returns:
    The standard deviation in pixels.
  """
  _check_size("size", size)
  return 0.3 * ((int(size) - 1) * 0.5 - 1.0) + 0.8


def blur_kernel(kind: str, size: int, channels: int) -> jax.Array:
  """A fixed low-pass kernel for a depthwise convolution.

  * 'box': every tap is `1 / size**2`.
  * 'gaussian': the separable Gaussian `g g^T`, with `g[i]` proportional to
    `exp(-r_i**2 / (2 sigma**2))`, `r_i = i - (size - 1) / 2` and sigma from
    `gaussian_sigma(size)`, normalised so that the 2-D kernel sums to 1. (For
    sizes up to 7 with sigma <= 0, OpenCV returns fixed binomial taps instead,
    e.g. [1/4, 1/2, 1/4]; this kernel samples the Gaussian at the documented
    sigma, e.g. [0.2390, 0.5220, 0.2390] for size 3.)

  Both sum to 1 per channel, so a constant map stays constant away from the
  border.

  Args:
    kind: 'box' or 'gaussian'.
    size: kernel width k, one of `FILTER_SIZES`.
    channels: number of channels C filtered independently.

  Returns:
    float32 array (k, k, 1, C), HWIO with one input channel per group, the
    layout of `depthwise_blur` and of the learned `blur` parameters.
  """
  if kind == "learned":
    raise ValueError(
        "blur_kernel has no 'learned' kernel; a learned filter starts as "
        "blur_kernel('box', ...), so ask for 'box'.")
  _check_choice("kind", kind, FIXED_KERNELS)
  _check_size("size", size)
  if (not isinstance(channels, numbers.Integral) or isinstance(channels, bool)
      or channels < 1):
    raise ValueError(
        f"channels={channels!r} is not supported; use an int >= 1.")
  size = int(size)
  if kind == "box":
    taps = np.ones(size, np.float64)
  else:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-(r**2) / (2.0 * gaussian_sigma(size) ** 2))
  taps /= taps.sum()
  kernel_2d = np.outer(taps, taps)
  kernel = np.broadcast_to(kernel_2d[:, :, None, None],
                           (size, size, 1, int(channels)))
  return jnp.asarray(kernel, jnp.float32)


def depthwise_blur(x: jax.typing.ArrayLike,
                   kernel: jax.typing.ArrayLike,
                   *,
                   padding: str = "zeros") -> jax.Array:
  """Filters every channel of `x` with its own k x k kernel, same output size.

  The border is padded explicitly by k // 2 pixels, then a VALID depthwise
  convolution (`feature_group_count=C`) runs, so the two padding modes differ
  only in the padded values:

  * 'zeros': zeros outside the map (a constant map darkens at the border);
  * 'reflect': mirror without repeating the edge pixel (numpy/`jnp.pad`
    'reflect', OpenCV's default BORDER_REFLECT_101), so a constant map stays
    constant everywhere when the kernel sums to 1.

  Args:
    x: (N, H, W, C) feature maps or images.
    kernel: (k, k, 1, C) depthwise kernel, k odd (see `blur_kernel`).
    padding: 'zeros' or 'reflect'.

  Returns:
    (N, H, W, C) filtered maps, the dtype of `x`.
  """
  _check_choice("padding", padding, FILTER_PADDINGS)
  x = jnp.asarray(x)
  kernel = jnp.asarray(kernel)
  if x.ndim != 4:
    raise ValueError(
        f"depthwise_blur needs x of shape (N, H, W, C), got {x.shape}; add "
        "the missing batch/channel axis.")
  channels = x.shape[-1]
  k = kernel.shape[0] if kernel.ndim == 4 else -1
  if (kernel.ndim != 4 or kernel.shape != (k, k, 1, channels) or k % 2 == 0):
    raise ValueError(
        f"depthwise_blur needs a kernel of shape (k, k, 1, {channels}) with k "
        f"odd for x with {channels} channels, got {kernel.shape}; build it "
        f"with blur_kernel(kind, k, {channels}).")
  pad = k // 2
  if padding == "reflect" and min(x.shape[1], x.shape[2]) <= pad:
    raise ValueError(
        f"reflect padding of {pad} px needs maps larger than {pad} px, got "
        f"{x.shape[1:3]}; use a smaller kernel or padding='zeros'.")
  mode = "constant" if padding == "zeros" else "reflect"
  x_padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=mode)
  # A sum of k*k shifted views times per-channel weights: elementwise work
  # that XLA fuses, several times faster (forward and gradients) on CPU
  # than a grouped convolution, and the same arithmetic.
  kernel = kernel.astype(x.dtype)
  h, w = x.shape[1], x.shape[2]
  out = jnp.zeros_like(x)
  for i in range(k):
    for j in range(k):
      out = out + x_padded[:, i:i + h, j:j + w, :] * kernel[i, j, 0]
  return out


class BlurFilter(nn.Module):
  """Depthwise low-pass filter: fixed constants, or a learned `kernel` param.

  Attributes:
    kernel_kind: 'box' | 'gaussian' (constants from `blur_kernel`, no params)
      | 'learned' (param `kernel` (k, k, 1, C), no bias, initialised as the
      box filter 1 / k**2).
    size: kernel width k.
    padding: 'zeros' | 'reflect' (see `depthwise_blur`).
  """

  kernel_kind: str = "box"
  size: int = 3
  padding: str = "zeros"

  @nn.compact
  def __call__(self, x: jax.typing.ArrayLike) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, C)."""
    x = jnp.asarray(x)
    channels = x.shape[-1]
    k = int(self.size)
    if self.kernel_kind == "learned":
      kernel = self.param("kernel", nn.initializers.constant(1.0 / (k * k)),
                          (k, k, 1, channels), jnp.float32)
    else:
      kernel = blur_kernel(self.kernel_kind, k, channels)
    return depthwise_blur(x, kernel, padding=self.padding)


class LisaCNN(nn.Module):
  """The RP2 LISA-CNN with an optional BlurNet filter.

  Parameters: `conv1` (8, 8, 3, 64), `conv2` (6, 6, 64, 128), `conv3`
  (5, 5, 128, 128), `dense` (512, 18), each with `kernel` and `bias`; plus
  `blur` {'kernel': (k, k, 1, C)} for a learned filter (C = 3 on the input,
  64 on L1).

  Attributes:
    filter_where: 'none' (the RP2 network) | 'input' (blur the image) | 'l1'
      (blur the 64 feature maps of conv1).
    filter_kernel: 'box' | 'gaussian' (fixed, see `blur_kernel`) | 'learned'
      (depthwise conv, box-initialised). Ignored when filter_where='none'.
    filter_size: kernel width, 3 | 5 | 7. Ignored when filter_where='none'.
    filter_padding: 'zeros' | 'reflect' (see `depthwise_blur`); the filtered
      maps keep their spatial size. Ignored when filter_where='none'.
    filter_position: 'after_relu' (filter relu(conv1), the default) |
      'before_relu' (relu(filter(conv1))); only allowed with filter_where='l1'.
    conv_impl: 'auto' | 'xla' | 's2d', how the convolutions are computed
      (same results; see `conv2d`). 'auto' picks the fastest per backend.
    num_classes: outputs of the last layer: the data set's label space
      (`classes.label_space`; 18 for LISA, 43 for GTSRB).
    input_channels: channels of the input images: 3 (RGB), or e.g. 6 for
      the column-ablated encoding of `defences.smoothing` (x and 1 - x on
      kept pixels, zeros elsewhere); conv1 takes whatever it is given.
  """

  filter_where: str = "none"
  filter_kernel: str = "box"
  filter_size: int = 3
  filter_padding: str = "zeros"
  filter_position: str = "after_relu"
  conv_impl: str = "auto"
  num_classes: int = NUM_CLASSES
  input_channels: int = IMAGE_SHAPE[-1]

  def __post_init__(self):
    if (isinstance(self.input_channels, bool)
        or not isinstance(self.input_channels, numbers.Integral)
        or self.input_channels < 1):
      raise ValueError(f"input_channels={self.input_channels!r} must be a "
                       "positive int (3 for RGB images).")
    _check_choice("filter_where", self.filter_where, FILTER_WHERE)
    _check_choice("filter_kernel", self.filter_kernel, FILTER_KERNELS)
    _check_size("filter_size", self.filter_size)
    _check_choice("filter_padding", self.filter_padding, FILTER_PADDINGS)
    _check_choice("filter_position", self.filter_position, FILTER_POSITIONS)
    _check_choice("conv_impl", self.conv_impl, CONV_IMPLS)
    if self.filter_position == "before_relu" and self.filter_where != "l1":
      raise ValueError(
          f"filter_position='before_relu' needs filter_where='l1', got "
          f"filter_where={self.filter_where!r}; use "
          "filter_position='after_relu'.")
    super().__post_init__()

  def _blur(self) -> BlurFilter:
    return BlurFilter(kernel_kind=self.filter_kernel, size=self.filter_size,
                      padding=self.filter_padding, name="blur")

  @nn.compact
  def __call__(self, x: jax.typing.ArrayLike, *, return_features: bool = False):
    """Logits of a batch of images.

    Args:
      x: float32 (N, 32, 32, input_channels): RGB images in [0, 1].
      return_features: also return the intermediate maps.

    Returns:
      logits (N, 18); with `return_features`, `(logits, features)` where
      features is a dict of
        'l1': conv1 after its ReLU, before any l1 filter (N, 16, 16, 64)
          (computed from the filtered image when filter_where='input');
        'l1_filtered': what conv2 sees (N, 16, 16, 64), equal to 'l1' unless
          filter_where='l1';
        'l2': conv2 after its ReLU (N, 6, 6, 128).
    """
    x = jnp.asarray(x, jnp.float32)
    h, w, _ = IMAGE_SHAPE
    if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, self.input_channels):
      raise ValueError(
          f"LisaCNN needs images of shape (N, {h}, {w}, "
          f"{self.input_channels}), got {x.shape}; resize to {h}x{w} "
          + ("RGB " if self.input_channels == 3 else "") + "and add a batch "
          "axis.")
    if self.filter_where == "input":
      x = self._blur()(x)
    z1 = Conv(L1_CHANNELS, 8, stride=2, padding="SAME", impl=self.conv_impl,
              name="conv1")(x)
    l1 = nn.relu(z1)
    if self.filter_where == "l1":
      if self.filter_position == "before_relu":
        l1_filtered = nn.relu(self._blur()(z1))
      else:
        l1_filtered = self._blur()(l1)
    else:
      l1_filtered = l1
    l2 = nn.relu(Conv(L2_SHAPE[-1], 6, stride=2, padding="VALID",
                      impl=self.conv_impl, name="conv2")(l1_filtered))
    l3 = nn.relu(Conv(128, 5, stride=1, padding="VALID", impl=self.conv_impl,
                      name="conv3")(l2))
    logits = nn.Dense(self.num_classes, name="dense")(
        l3.reshape((l3.shape[0], -1)))
    if return_features:
      return logits, {"l1": l1, "l1_filtered": l1_filtered, "l2": l2}
    return logits


def model_from_config(cfg: Mapping[str, Any]) -> LisaCNN:
  """Builds a `LisaCNN` from a flat ConfigDict or dict of `MODEL_FIELDS`.

  Args:
    cfg: `ml_collections.ConfigDict` or mapping; keys a subset of
      `MODEL_FIELDS`, missing keys take the `LisaCNN` defaults.

  Returns:
    The module (validated; see `LisaCNN`).
  """
  if hasattr(cfg, "to_dict"):  # ml_collections.ConfigDict / FrozenConfigDict.
    cfg = cfg.to_dict()
  if not isinstance(cfg, Mapping):
    raise ValueError(
        f"model config must be a ConfigDict or dict, got {type(cfg).__name__}; "
        f"pass a mapping with keys from {MODEL_FIELDS}.")
  unknown = sorted(str(k) for k in cfg if k not in MODEL_FIELDS)
  if unknown:
    raise ValueError(
        f"unknown model config key(s) {unknown}; LisaCNN accepts only "
        f"{MODEL_FIELDS}.")
  return LisaCNN(**dict(cfg))


#: The training defences (`blurnet_jax.defences.training`): none, masked
#: PGD or DOA adversarial training, column smoothing's base classifier.
DEFENCE_KINDS: tuple[str, ...] = ("none", "pgd_mask", "doa", "smoothing")


def defence_kind(config: Mapping[str, Any]) -> str:
  """`config.defence.kind` ('none' for a config without the block, e.g.
  the config.json of an older run), checked: the one place the defence
  kind of a train config is read."""
  kind = (config.get("defence") or {}).get("kind", "none")
  if kind not in DEFENCE_KINDS:
    raise ValueError(f"defence.kind={kind!r}; use one of {DEFENCE_KINDS} "
                     "(--config.defence.kind=...)")
  return kind


def model_for(config: Mapping[str, Any]) -> LisaCNN:
  """The model of a train config: its `model` block, with one output per
  class of its data source (`config.data.source`). Under column smoothing
  (`config.defence.kind == 'smoothing'`) it is the base classifier, which
  takes the 6-channel ablated encoding of `defences.smoothing`."""
  model = config["model"]
  model = model.to_dict() if hasattr(model, "to_dict") else dict(model)
  model = model_from_config({**model, "num_classes":
                             label_space(config["data"]["source"]).num_classes})
  if defence_kind(config) == "smoothing":
    return model.clone(input_channels=2 * IMAGE_SHAPE[-1])
  return model


#: A classifier as every attack and evaluation takes it:
#: `apply_fn(params, images) -> logits`, e.g. `apply_fn_for(model)`.
ApplyFn = Callable[[Any, jax.Array], jax.Array]


@functools.lru_cache(maxsize=None)
def apply_fn_for(model: LisaCNN) -> ApplyFn:
  """`apply_fn(params, images) -> logits` of `model`, one object per model.

  Equal models (same fields) get the same function object, so the jitted
  programs that take it as a static argument (the RP2 attack) compile once
  per architecture, not once per call.
  """
  def apply_fn(params, images):
    return model.apply({"params": params}, images)

  return apply_fn


@functools.lru_cache(maxsize=None)
def _predict_program(apply_fn: Callable[[Any, jax.Array], jax.Array]):
  return jax.jit(lambda p, x: jnp.argmax(apply_fn(p, x), -1))


def predict(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any,
            images) -> np.ndarray:
  """int (N,) classes of `images`, as host numpy.

  `apply_fn(params, images) -> logits` (the package's convention, e.g.
  `apply_fn_for(model)`); one compiled program per `apply_fn`. uint8
  images (a prepared split as stored) are scaled to [0, 1] first, the
  models' input range; float images are taken as they are.
  """
  images = np.asarray(images)
  if images.dtype == np.uint8:
    images = images.astype(np.float32) * np.float32(1.0 / 255.0)
  return np.asarray(_predict_program(apply_fn)(params, jnp.asarray(images)))


def param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
  """Shapes of the unfiltered LisaCNN params, from the module itself."""
  variables = jax.eval_shape(
      LisaCNN().init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, *IMAGE_SHAPE), jnp.float32))
  return {layer: {leaf: tuple(v.shape) for leaf, v in leaves.items()}
          for layer, leaves in variables["params"].items()}


def _check_base_params(params: Mapping[str, Any]) -> None:
  """Unfiltered LisaCNN params (conv1, conv2, conv3, dense) or ValueError."""
  if not isinstance(params, Mapping):
    raise ValueError(
        f"params must be a dict, got {type(params).__name__}; pass the inner "
        "params dict (variables['params']).")
  expected = param_shapes()
  if "blur" in params:
    raise ValueError(
        "params already hold a learned 'blur' filter; pass the params of an "
        "unfiltered LisaCNN (drop params['blur']).")
  if set(params) != set(expected):
    raise ValueError(
        f"params have top-level keys {sorted(params)}, expected "
        f"{sorted(expected)}; pass the inner params dict "
        "(variables['params']).")
  for layer, leaves in expected.items():
    for leaf, shape in leaves.items():
      got = getattr(params[layer].get(leaf), "shape", None)
      if got is None or tuple(got) != shape:
        raise ValueError(
            f"params[{layer!r}][{leaf!r}] has shape {got}, LisaCNN expects "
            f"{shape}; pass params of a LisaCNN (e.g. params_from_rp2).")


def insert_filter(params: Mapping[str, Any],
                  **filter_fields: Any) -> tuple[LisaCNN, Params]:
  """Adds a BlurNet filter to trained, unfiltered params (no retraining).

  Fixed kernels ('box', 'gaussian') are module constants: the params come back
  unchanged and only the module differs. A 'learned' filter adds
  `params['blur'] = {'kernel': blur_kernel('box', k, C)}`, its initial value.

  Args:
    params: unfiltered `LisaCNN` params (e.g. from `params_from_rp2`).
    **filter_fields: `LisaCNN` fields (`MODEL_FIELDS`), e.g.
      `filter_where='l1', filter_kernel='box', filter_size=5`.

  Returns:
    (model, params) for `model.apply({'params': params}, x)`.
  """
  model = model_from_config(filter_fields)
  _check_base_params(params)
  new_params: Params = {layer: dict(leaves) for layer, leaves in params.items()}
  if model.filter_where != "none" and model.filter_kernel == "learned":
    channels = IMAGE_SHAPE[-1] if model.filter_where == "input" else L1_CHANNELS
    new_params["blur"] = {
        "kernel": blur_kernel("box", model.filter_size, channels)}
  return model, new_params
