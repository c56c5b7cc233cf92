r"""An evaluation a sceptical reviewer accepts: adaptive, gradient-free and
physical checks of every model (Carlini et al. 2019's checklist, automated).

    python -m launch.robustness --config=configs/robustness.py:runlocal \
        --workdir=/tmp/robustness

For each model, on stop-sign victims (true class stop; success = the
perturbed victim is not classified as stop):

* gradient check: the input gradient of the loss is finite and non-zero on
  every victim (ART's check; a zero or NaN gradient makes PGD blind);
* unbounded attacks: PGD on the whole image with a budget that covers the
  pixel range (L-inf 1, L2 sqrt(32 * 32 * 3)) must reach 100%;
* budget curves: PGD and the gradient-free Square Attack, L-inf and L2,
  restricted to the sticker mask, success against the budget; each must
  not fall as the budget grows, and Square must not beat PGD (if a
  gradient-free search wins, the gradients mislead: gradient masking);
* a steps curve: PGD success must not fall with more iterations;
* EOT at test time: every attack's images shown under fresh random
  physical transforms;
* transfer: perturbations made on each model (PGD at the reference budget,
  and a physical RP2 sticker) shown to every other one; a model's own
  (white-box) success must not be below what transfers to it;
* physical test bench: an RP2 sticker (EOT over physical transforms)
  measured against viewing angle and against distance.

"Must not fall" and "must not beat" allow one victim of slack: the attacks
start at random points, so two runs can differ by a victim without anything
being wrong. A check that fails becomes a flag in `robustness.json` and in
the report, with the numbers that raised it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import optax

from blurnet_jax import report as report_lib
from blurnet_jax import train
from blurnet_jax.attacks import pgd
from blurnet_jax.attacks import rp2
from blurnet_jax.attacks import run as attack_run
from blurnet_jax.attacks import square
from blurnet_jax.attacks import transforms
from blurnet_jax.classes import IMAGE_SHAPE, STOP
from blurnet_jax.data import masks as masks_lib
from blurnet_jax.data import synthetic

ATTACKS = ("pgd", "square")
NORMS = pgd.NORMS
UNBOUNDED = {"linf": 1.0, "l2": math.sqrt(math.prod(IMAGE_SHAPE))}


def _comma_list(spec, name: str, cast, valid, what: str) -> list:
  """The values of a comma list setting, each `cast` and `valid`."""
  try:
    values = [cast(v) for v in str(spec).split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or not all(valid(v) for v in values):
    raise ValueError(f"robustness.{name}={spec!r} must be a comma list of "
                     f"{what}")
  return values


def _floats(spec: str, name: str) -> list[float]:
  return _comma_list(spec, name, float,
                     lambda v: math.isfinite(v) and v >= 0,
                     "numbers >= 0, e.g. '0.1,0.25,1'")


def _ints(spec: str, name: str, lo: int, hi: int) -> list[int]:
  return _comma_list(spec, name, int, lambda v: lo <= v <= hi,
                     f"integers in {lo}..{hi}")


# ------------------------------------------------------------- programs --


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _gradients(apply_fn, params, images):
  def loss(x):
    logits = apply_fn(params, x)
    labels = jnp.full(x.shape[:1], STOP)
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits,
                                                                   labels))
  return jax.grad(loss)(images)


def gradient_check(apply_fn, params, images) -> dict[str, float]:
  """Share of victims whose input gradient (of the CE of stop) is finite
  everywhere, and share whose gradient is also non-zero; its median norm."""
  g = np.asarray(_gradients(apply_fn, params, jnp.asarray(images)))
  g = g.reshape(len(g), -1)
  finite = np.all(np.isfinite(g), axis=1)
  norm = np.where(finite, np.linalg.norm(np.where(np.isfinite(g), g, 0),
                                         axis=1), 0.0)
  return {"finite": float(finite.mean()),
          "nonzero": float(np.mean(finite & (norm > 0))),
          "median_norm": float(np.median(norm))}


@functools.partial(jax.jit, static_argnames=("attack", "apply_fn", "cfg"))
def _curve(attack, apply_fn, params, images, masks, key, budgets, cfg):
  """`attack` at every (budget, mask) pair: one program, vmapped over them
  (so the unbounded run on the whole image rides along with the curve)."""
  fn = pgd.pgd_attack if attack == "pgd" else square.square_attack
  return jax.vmap(lambda e, m: fn(apply_fn, params, images, STOP, m, key, e,
                                  cfg=cfg)["adversarial"])(budgets, masks)


@functools.partial(jax.jit, static_argnames=("apply_fn", "samples"))
def _misclassified(apply_fn, params, sets, key, samples):
  """(K, N, 32, 32, 3) image sets -> (not-stop rate as they are, under
  `samples` fresh physical transforms), each (K,)."""
  physical = transforms.TransformConfig.physical()

  def one(x, k):
    plain = jnp.argmax(apply_fn(params, x), -1) != STOP
    moved = rp2.predictions_under_transforms(
        k, apply_fn, params, x, transforms=physical,
        num_samples=samples) != STOP
    return jnp.mean(plain), jnp.mean(moved)

  keys = jax.random.split(key, sets.shape[0])
  return jax.lax.map(lambda a: one(*a), (sets, keys))


def misclassified(apply_fn, params, images) -> float:
  """Share of `images` (N, 32, 32, 3) not classified as stop."""
  return float(np.mean(attack_run.predict(apply_fn, params, images) != STOP))


# ----------------------------------------------------------- per model --


def attack_configs(rc) -> dict[str, Any]:
  """The PGD / Square configs of a robustness block, by 'attack_norm'."""
  out = {}
  for norm in NORMS:
    for attack in ATTACKS:
      out[f"{attack}_{norm}"] = (
          pgd.PGDConfig(norm=norm, steps=int(rc.pgd_steps))
          if attack == "pgd" else square.SquareConfig(
              norm=norm, queries=int(rc.square_queries),
              p_init=float(rc.square_p_init)))
  return out


def evaluate_model(apply_fn, params, images, mask, key, rc, *,
                   sticker: np.ndarray | None = None,
                   desc: str = "") -> dict[str, Any]:
  """Every per-model measurement of the checklist (see the module doc).

  Args:
    apply_fn, params: the classifier.
    images: (N, 32, 32, 3) stop-sign victims.
    mask: the sticker region (32, 32, 1|3) of the budget attacks and RP2.
    key: PRNG key.
    rc: the robustness config block (configs/robustness.py).
    sticker: optional (N, 32, 32, 3) victims already wearing a physical
      perturbation (the authors' own, for the real RP2 data); otherwise an
      RP2 sticker is made on this model.
    desc: label of the progress lines.

  Returns:
    A JSON-ready dict: 'clean', 'gradients', 'unbounded', 'budgets',
    'steps', 'physical' and, under '_adversarial' (not for JSON), the
    images that the transfer matrix shows to other models.
  """
  images = np.asarray(images, np.float32)
  keys = iter(jax.random.split(key, 16))
  budgets = {"linf": _floats(rc.linf_budgets, "linf_budgets"),
             "l2": _floats(rc.l2_budgets, "l2_budgets")}
  reference = float(rc.reference_linf)
  if reference not in budgets["linf"]:
    raise ValueError(f"robustness.reference_linf={reference:g} is not one of "
                     f"linf_budgets {budgets['linf']}; add it there")
  steps = _ints(rc.steps_curve, "steps_curve", 1, 100000)
  _physical_settings(rc)  # before the long part: a typo fails at once
  cfgs = attack_configs(rc)
  x = jnp.asarray(images)
  out: dict[str, Any] = {"victims": len(images)}
  out["gradients"] = gradient_check(apply_fn, params, images)

  # Each attack runs once over its budgets inside the mask; PGD also at the
  # unbounded budget on the whole image, one more member of the same vmap.
  mask = jnp.asarray(mask, jnp.float32)
  made = {}
  for name, cfg in cfgs.items():
    attack, norm = name.split("_")
    values = list(budgets[norm])
    masks = [mask] * len(values)
    if attack == "pgd":
      values.append(UNBOUNDED[norm])
      masks.append(jnp.ones_like(mask))
    if desc:
      whole = (f" (and {UNBOUNDED[norm]:.3g} on the whole image)"
               if attack == "pgd" else "")
      print(f"  {desc}: {attack} {norm}, budgets "
            f"{', '.join(f'{b:g}' for b in budgets[norm])} in the mask"
            f"{whole}", flush=True)
    made[name] = _curve(attack, apply_fn, params, x, jnp.stack(masks),
                        next(keys), jnp.asarray(values, jnp.float32), cfg)
  if sticker is None:
    cfg = rp2.RP2Config(steps=int(rc.rp2_steps),
                        num_transforms=int(rc.rp2_transforms),
                        transforms=transforms.TransformConfig.physical())
    # Toward RP2's default target, the authors' (12, speedLimit45).
    res = attack_run.attack_targets(
        apply_fn, params, images, np.asarray(mask), [cfg.target], next(keys),
        cfg=cfg, desc=f"{desc} physical RP2" if desc else None)
    sticker = res["adversarial"][0]
  sticker = np.asarray(sticker, np.float32)
  # One program measures every set as it is and under EOT: the clean
  # victims first, the sticker last.
  plain, moved = (np.asarray(v) for v in _misclassified(
      apply_fn, params,
      jnp.concatenate([x[None], *made.values(), jnp.asarray(sticker)[None]]),
      next(keys), int(rc.eot_samples)))
  out["clean"], out["clean_eot"] = float(plain[0]), float(moved[0])
  out["sticker"] = float(plain[-1])
  out["sticker_eot"] = float(moved[-1])
  out["budgets"], out["unbounded"] = {}, {}
  start = 1
  for name, adv in made.items():
    attack, norm = name.split("_")
    e = len(budgets[norm])
    out["budgets"][name] = {
        "budgets": budgets[norm],
        "success": plain[start:start + e].round(6).tolist(),
        "eot_success": moved[start:start + e].round(6).tolist()}
    if attack == "pgd":
      out["unbounded"][norm] = {"budget": UNBOUNDED[norm],
                                "success": float(plain[start + e])}
    start += len(adv)

  success = []
  for s in steps:
    adv = _curve("pgd", apply_fn, params, x, mask[None], next(keys),
                 jnp.asarray([reference]), pgd.PGDConfig(steps=s))
    success.append(misclassified(apply_fn, params, adv[0]))
  out["steps"] = {"norm": "linf", "budget": reference, "steps": steps,
                  "success": success}
  ref_adv = np.asarray(made["pgd_linf"][budgets["linf"].index(reference)])

  out["physical"] = physical_curves(apply_fn, params, images, sticker, rc)
  out["_adversarial"] = {"pgd_linf": ref_adv, "rp2": sticker}
  return out


def _physical_settings(rc) -> tuple[list[float], list[int]]:
  angles = _floats(rc.angles, "angles")
  if any(a >= 90 for a in angles):
    raise ValueError(f"robustness.angles={rc.angles!r} must be below 90")
  return angles, _ints(rc.distances, "distances", 1, IMAGE_SHAPE[0])


def physical_curves(apply_fn, params, clean, perturbed, rc) -> dict[str, Any]:
  """Not-stop rates of the clean and the perturbed victims, seen from each
  viewing angle (yaw) and at each distance (sign width in pixels)."""
  angles, distances = _physical_settings(rc)
  out = {"angles": angles, "distances": distances}
  for name, images in (("clean", clean), ("perturbed", perturbed)):
    out[f"{name}_angle"] = [misclassified(
        apply_fn, params, transforms.view(images, yaw_deg=a)) for a in angles]
    out[f"{name}_distance"] = [misclassified(
        apply_fn, params, transforms.at_distance(images, d))
        for d in distances]
  return out


# --------------------------------------------------------------- checks --


def transfer_matrix(named_models, adversarial: dict[str, np.ndarray]
                    ) -> list[list[float]]:
  """M[i][j]: not-stop rate of the images made on model i, shown to j."""
  return [[misclassified(f, p, adversarial[src]) for _, f, p in named_models]
          for src, _, _ in named_models]


def _drops(values: list[float]) -> float:
  """The largest fall from one point of a curve to any later point."""
  worst = 0.0
  for i, v in enumerate(values):
    for later in values[i + 1:]:
      worst = max(worst, v - later)
  return worst


def checks(result: dict[str, Any], slack: float) -> list[dict[str, Any]]:
  """The checklist on one model's `evaluate_model` result.

  Returns one row per check: 'check', 'passed' (bool), 'detail' (the
  numbers behind it). `slack` is the tolerated difference (one victim).
  """
  rows = []
  g = result["gradients"]
  rows.append({"check": "gradients finite and non-zero",
               "passed": g["finite"] == 1.0 and g["nonzero"] == 1.0,
               "detail": f"finite {g['finite']:.0%}, non-zero "
                         f"{g['nonzero']:.0%} of victims, median norm "
                         f"{g['median_norm']:.3g}"})
  u = result["unbounded"]
  rows.append({"check": "unbounded attacks reach 100%",
               "passed": all(v["success"] == 1.0 for v in u.values()),
               "detail": ", ".join(f"PGD {n} eps {v['budget']:.3g}: "
                                   f"{v['success']:.0%}"
                                   for n, v in u.items())})
  for name, c in result["budgets"].items():
    drop = _drops(c["success"])
    rows.append({"check": f"{name} success grows with the budget",
                 "passed": drop <= slack + 1e-9,
                 "detail": f"largest fall {drop:.1%}; " + ", ".join(
                     f"{b:g}: {s:.0%}" for b, s in zip(c["budgets"],
                                                       c["success"]))})
  s = result["steps"]
  drop = _drops(s["success"])
  rows.append({"check": "PGD success grows with the steps",
               "passed": drop <= slack + 1e-9,
               "detail": f"largest fall {drop:.1%}; " + ", ".join(
                   f"{n}: {v:.0%}" for n, v in zip(s["steps"],
                                                   s["success"]))})
  for norm in NORMS:
    p, q = result["budgets"][f"pgd_{norm}"], result["budgets"][f"square_{norm}"]
    over = [(b, qs - ps) for b, ps, qs in zip(p["budgets"], p["success"],
                                              q["success"])]
    worst_b, worst = max(over, key=lambda t: t[1])
    rows.append({"check": f"gradient-free <= gradient-based ({norm})",
                 "passed": worst <= slack + 1e-9,
                 "detail": f"Square - PGD at most {worst:+.1%} (budget "
                           f"{worst_b:g})"})
  if "transfer" in result:
    for kind, t in result["transfer"].items():
      gap = t["best_transfer"] - t["white_box"]
      rows.append({"check": f"white-box >= transfer ({kind})",
                   "passed": gap <= slack + 1e-9,
                   "detail": f"white-box {t['white_box']:.0%}, best "
                             f"transfer {t['best_transfer']:.0%} (from "
                             f"{t['best_source']})"})
  return rows


# ------------------------------------------------------------------ run --


def evaluate_all(models_: list[tuple[str, Any, Any]], images, mask, key, rc,
                 *, real: dict[str, Any] | None = None) -> dict[str, Any]:
  """`evaluate_model` on every (name, apply_fn, params), the transfer
  matrices between them, and the checks; plus the RP2 model on its real
  victims when `real` (from `reproduce.rp2_assets`) is given."""
  results: dict[str, Any] = {"models": {}}
  adversarial = {}
  for i, (name, f, p) in enumerate(models_):
    print(f"robustness: {name} ({i + 1}/{len(models_)})", flush=True)
    r = evaluate_model(f, p, images, mask, jax.random.fold_in(key, i), rc,
                       desc=name)
    adversarial[name] = r.pop("_adversarial")
    results["models"][name] = r
  names = [n for n, _, _ in models_]
  results["transfer"] = {}
  for kind in ("pgd_linf", "rp2"):
    matrix = transfer_matrix(models_, {n: adversarial[n][kind] for n in names})
    results["transfer"][kind] = {"sources": names, "matrix": matrix}
    if len(names) > 1:
      for j, name in enumerate(names):
        others = [(matrix[i][j], names[i]) for i in range(len(names))
                  if i != j]
        best, source = max(others)
        results["models"][name].setdefault("transfer", {})[kind] = {
            "white_box": matrix[j][j], "best_transfer": best,
            "best_source": source}
  if real is not None:
    print("robustness: RP2 model on the real victims", flush=True)
    r = evaluate_model(real["apply_fn"], real["params"], real["images"],
                       real["mask"], jax.random.fold_in(key, len(models_)),
                       rc, sticker=real["adversarial"], desc="rp2")
    r.pop("_adversarial")
    r["data"] = "rp2"
    results["models"]["rp2"] = r
  for name, r in results["models"].items():
    r.setdefault("data", "synthetic")
    r["checks"] = checks(r, slack=1.0 / r["victims"])
    r["flags"] = [c["check"] for c in r["checks"] if not c["passed"]]
  return results


# -------------------------------------------------------------- figures --


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _log_ticks(ax, values) -> None:
  """A log x axis labelled at `values` (plain numbers, no 10^x)."""
  ax.set_xscale("log")
  ax.set_xticks(values, [f"{v:g}" for v in values])
  ax.minorticks_off()


def _model_legend(fig, names, styles) -> None:
  """One legend beside the panels: a colour per model, then the line
  styles (what each kind of line is), so that it never covers a curve."""
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  handles = [Line2D([], [], color=f"C{k % 10}", lw=2, label=name)
             for k, name in enumerate(names)]
  handles += [Line2D([], [], color="0.3", ls=ls, marker=m, ms=4, label=label)
              for ls, m, label in styles]
  fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5),
             fontsize=8, frameon=False)


def plot_budgets(results, path) -> None:
  """Success against budget, one panel per norm, a colour per model;
  PGD solid, Square dashed, PGD under EOT dotted."""
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
  for ax, norm in zip(axes, NORMS):
    for k, r in enumerate(results["models"].values()):
      colour = f"C{k % 10}"
      for attack, style in (("pgd", "-o"), ("square", "--s")):
        c = r["budgets"][f"{attack}_{norm}"]
        ax.plot(c["budgets"], c["success"], style, color=colour, ms=4)
      c = r["budgets"][f"pgd_{norm}"]
      ax.plot(c["budgets"], c["eot_success"], ":", color=colour)
    _log_ticks(ax, next(iter(results["models"].values()))["budgets"][
        f"pgd_{norm}"]["budgets"])
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("budget epsilon (" + ("per pixel" if norm == "linf"
                                        else "L2 per image")
                  + ", inside the mask)")
    ax.set_ylabel("victims not classified as stop")
    ax.set_title(f"{norm}: success against budget", fontsize=10)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  _model_legend(fig, list(results["models"]),
                [("-", "o", "PGD"), ("--", "s", "Square (no gradient)"),
                 (":", "", "PGD under EOT")])
  fig.savefig(str(path), bbox_inches="tight")
  plt.close(fig)


def plot_steps(results, path) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
  for k, (name, r) in enumerate(results["models"].items()):
    s = r["steps"]
    ax.plot(s["steps"], s["success"], "-o", color=f"C{k % 10}", label=name)
  _log_ticks(ax, next(iter(results["models"].values()))["steps"]["steps"])
  ax.set_ylim(-0.03, 1.03)
  ax.set_xlabel("PGD steps")
  ax.set_ylabel("victims not classified as stop")
  any_model = next(iter(results["models"].values()))
  ax.set_title(f"PGD linf, budget {any_model['steps']['budget']:g}: success "
               "against steps", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(str(path))
  plt.close(fig)


def plot_transfer(results, path) -> None:
  """Heat maps: perturbation made on the row model, shown to the column
  model; the diagonal is white-box."""
  plt = _plt()
  kinds = list(results["transfer"])
  names = results["transfer"][kinds[0]]["sources"]
  size = 1.0 + 0.75 * len(names)
  fig, axes = plt.subplots(1, len(kinds), figsize=(size * len(kinds) + 1,
                                                   size + 0.8), dpi=110)
  for ax, kind in zip(np.atleast_1d(axes), kinds):
    m = np.asarray(results["transfer"][kind]["matrix"])
    ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(names)):
      for j in range(len(names)):
        ax.text(j, i, f"{m[i, j]:.0%}", ha="center", va="center",
                color="white" if m[i, j] < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("shown to")
    ax.set_ylabel("made on")
    ax.set_title({"pgd_linf": "PGD linf (reference budget)",
                  "rp2": "physical RP2 sticker"}.get(kind, kind), fontsize=9)
  fig.tight_layout()
  fig.savefig(str(path))
  plt.close(fig)


def plot_physical(results, path, data: str) -> bool:
  """Success against viewing angle and distance for the models on `data`;
  perturbed solid, clean dashed. False when no model is on `data`."""
  chosen = [(n, r) for n, r in results["models"].items() if r["data"] == data]
  if not chosen:
    return False
  plt = _plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), dpi=110)
  for k, (_, r) in enumerate(chosen):
    p, colour = r["physical"], f"C{k % 10}"
    for ax, axis in ((axes[0], "angle"), (axes[1], "distance")):
      xs = p["angles"] if axis == "angle" else p["distances"]
      ax.plot(xs, p[f"perturbed_{axis}"], "-o", color=colour, ms=4)
      ax.plot(xs, p[f"clean_{axis}"], "--", color=colour)
  axes[0].set_xlabel("viewing angle (yaw, degrees)")
  axes[1].set_xlabel("distance: sign width on the sensor (pixels)")
  axes[1].invert_xaxis()
  for ax in axes:
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("victims not classified as stop")
    ax.grid(alpha=0.3)
  axes[0].set_title(f"{data} victims: success against viewing angle",
                    fontsize=10)
  axes[1].set_title(f"{data} victims: success against distance", fontsize=10)
  fig.tight_layout()
  _model_legend(fig, [n for n, _ in chosen],
                [("-", "o", "with the sticker"), ("--", "", "clean")])
  fig.savefig(str(path), bbox_inches="tight")
  plt.close(fig)
  return True


def write_figures(results, figdir: epath.Path) -> list[tuple[str, str]]:
  """Every figure of the robustness results: (path, caption) pairs."""
  figdir.mkdir(parents=True, exist_ok=True)
  out = []
  path = figdir / "robustness_budgets.png"
  plot_budgets(results, path)
  out.append((str(path), "Success against budget inside the sticker mask: "
              "PGD (solid), Square Attack (dashed, gradient-free), PGD's "
              "images under fresh physical transforms (dotted)."))
  path = figdir / "robustness_steps.png"
  plot_steps(results, path)
  out.append((str(path), "PGD success against its number of steps."))
  path = figdir / "robustness_transfer.png"
  plot_transfer(results, path)
  out.append((str(path), "Transfer: perturbations made on the row model, "
              "shown to the column model (synthetic victims); the diagonal "
              "is white-box."))
  for data in ("synthetic", "rp2"):
    path = figdir / f"robustness_physical_{data}.png"
    if plot_physical(results, path, data):
      out.append((str(path), f"Physical test bench, {data} victims: the RP2 "
                  "sticker (solid) and the clean signs (dashed) seen from "
                  "a turned viewpoint and from afar."))
  return out


# --------------------------------------------------------------- report --


def summary_rows(results) -> list[dict[str, Any]]:
  """One row per model: the robustness figures and its flags."""
  rows = []
  for name, r in results["models"].items():
    row = {"variant": name, "data": r["data"], "clean not stop": r["clean"]}
    for key, c in r["budgets"].items():
      row[f"{key} @max"] = c["success"][-1]
    row["pgd_linf @max, EOT"] = r["budgets"]["pgd_linf"]["eot_success"][-1]
    p = r["physical"]
    row["sticker"] = r["sticker"]
    row["sticker, EOT"] = r["sticker_eot"]
    for axis, where in (("angle", "max angle"), ("distance", "min px")):
      row[f"sticker / clean @{where}"] = (
          f"{p[f'perturbed_{axis}'][-1]:.0%} / {p[f'clean_{axis}'][-1]:.0%}")
    row["flags"] = "; ".join(r["flags"]) or "none"
    rows.append(row)
  return rows


def report_blocks(results, figures, rc) -> list[Any]:
  """Report blocks: the summary table, the checks, the figures."""
  R = report_lib
  rows = summary_rows(results)
  columns = list(rows[0])
  fmt = {c: ".0%" for c in columns if c not in ("variant", "data", "flags")
         and "/" not in c}
  any_model = next(iter(results["models"].values()))
  blocks = [
      R.Paragraph(
          "Victims: stop signs; success = perturbed victim not classified as "
          "stop. Budget attacks act inside the sticker mask (PGD "
          f"{rc.pgd_steps} steps with a random start; Square Attack "
          f"{rc.square_queries} queries, no gradient); '@max' is the largest "
          f"budget (linf {_floats(rc.linf_budgets, 'linf_budgets')[-1]:g}, "
          f"L2 {_floats(rc.l2_budgets, 'l2_budgets')[-1]:g}); EOT = "
          f"{rc.eot_samples} fresh physical transforms per image. The "
          "sticker columns are the physical RP2 sticker (the authors' own "
          "on the real victims) as it is, under EOT, and (beside the clean "
          "victims' rate) at the largest "
          f"angle ({_floats(rc.angles, 'angles')[-1]:g} degrees) and at "
          f"the smallest size ({_ints(rc.distances, 'distances', 1, 32)[-1]}"
          f" px). Checks allow one victim of slack ({any_model['victims']} "
          "victims)."),
      R.Table(columns, [[r[c] for c in columns] for r in rows],
              caption="Robustness per model", formats=fmt),
  ]
  check_rows = []
  for name, r in results["models"].items():
    for c in r["checks"]:
      check_rows.append([name, c["check"], "pass" if c["passed"] else "FLAG",
                         c["detail"]])
  blocks.append(R.Table(["variant", "check", "result", "numbers"], check_rows,
                        caption="The checklist, per model"))
  blocks += [R.Figure(p, c) for p, c in figures]
  return blocks


def text_summary(results) -> str:
  lines = [f"  {'variant':12s} {'data':9s} {'flags'}"]
  for name, r in results["models"].items():
    lines.append(f"  {name:12s} {r['data']:9s} "
                 f"{'; '.join(r['flags']) or 'none'}")
  return "\n".join(lines)


def evaluate_trained(config, trained: dict[str, dict[str, Any]], key,
                     rp2_data: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
  """`evaluate_all` on the models of `reproduce.train_models` (synthetic
  victims, the config's mask) and, if given, the RP2 model on real data."""
  rc = config.robustness
  images = synthetic.synthetic_victims(int(rc.victims), seed=0)
  mask = masks_lib.get_mask(rc.mask)
  named = [(n, m["apply_fn"], m["params"]) for n, m in trained.items()]
  return evaluate_all(named, images, mask, key, rc, real=rp2_data)


def run(config, workdir: epath.PathLike) -> dict[str, Any]:
  """Trains (or reuses) the models of `config`, runs the checklist, writes
  robustness.json, figures/robustness_*.png and robustness_report/."""
  # reproduce imports this module for its summary section.
  from blurnet_jax import reproduce  # pylint: disable=g-import-not-at-top
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  stage = reproduce.Stages(("train", "robustness", "report"))
  rp2_data = reproduce.rp2_assets(config.rp2_dir) if config.rp2_dir else None
  with stage("train"):
    trained = reproduce.train_models(config, workdir)
  with stage("robustness"):
    results = evaluate_trained(config, trained, jax.random.key(config.seed),
                               rp2_data)
    print(text_summary(results))
  with stage("report"):
    figures = write_figures(results, workdir / "figures")
    results["stage_seconds"] = dict(stage.seconds)
    train.write_json(workdir / "robustness.json", train.jsonable(results),
                     sort_keys=False)
    md, _ = report_lib.write_report(
        workdir / "robustness_report", "Robustness checklist",
        report_blocks(results, figures, config.robustness) + [
            report_lib.Heading("Config"),
            report_lib.Code(config.to_json_best_effort(indent=2), "json")])
  print(f"\nrobustness.json and {md.parent / 'index.html'}")
  return results
