"""The robustness figures: success against budget, steps, viewing angle and
distance, and the transfer matrices, drawn from the robustness results
dict (`study.robustness`)."""

from __future__ import annotations

from etils import epath
import numpy as np

from blurnet_jax.attacks.pgd import NORMS
from blurnet_jax.plots import canvas


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


def _band(ax, xs, c, prefix: str, colour: str) -> None:
  """The 95% interval of a curve as a light band, where the JSON has one
  ('ci_low'/'ci_high', or with `prefix`, e.g. 'eot_')."""
  low, high = c.get(f"{prefix}ci_low"), c.get(f"{prefix}ci_high")
  if low is not None and high is not None:
    ax.fill_between(xs, low, high, color=colour, alpha=0.12, lw=0)


def plot_budgets(results, path) -> None:
  """Success against budget, one panel per norm, a colour per model;
  PGD solid, Square dashed, PGD under EOT dotted."""
  plt = canvas.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
  for ax, norm in zip(axes, NORMS):
    for k, r in enumerate(results["models"].values()):
      colour = f"C{k % 10}"
      for attack, style in (("pgd", "-o"), ("square", "--s")):
        c = r["budgets"][f"{attack}_{norm}"]
        ax.plot(c["budgets"], c["success"], style, color=colour, ms=4)
        if attack == "pgd":
          _band(ax, c["budgets"], c, "", colour)
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
  canvas.save_on_writer(fig.savefig, path, bbox_inches="tight")
  plt.close(fig)


def plot_steps(results, path) -> None:
  """Success of PGD linf against its number of steps, a colour per model."""
  plt = canvas.pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
  for k, (name, r) in enumerate(results["models"].items()):
    s = r["steps"]
    ax.plot(s["steps"], s["success"], "-o", color=f"C{k % 10}", label=name)
    _band(ax, s["steps"], s, "", f"C{k % 10}")
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
  canvas.save_on_writer(fig.savefig, path)
  plt.close(fig)


def plot_transfer(results, path) -> None:
  """Heat maps: perturbation made on the row model, shown to the column
  model; the diagonal is white-box."""
  plt = canvas.pyplot()
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
  canvas.save_on_writer(fig.savefig, path)
  plt.close(fig)


def plot_physical(results, path, data: str) -> bool:
  """Success against viewing angle and distance for the models on `data`;
  perturbed solid, clean dashed. False when no model is on `data`."""
  chosen = [(n, r) for n, r in results["models"].items() if r["data"] == data]
  if not chosen:
    return False
  plt = canvas.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), dpi=110)
  for k, (_, r) in enumerate(chosen):
    p, colour = r["physical"], f"C{k % 10}"
    for ax, axis in ((axes[0], "angle"), (axes[1], "distance")):
      xs = p["angles"] if axis == "angle" else p["distances"]
      ax.plot(xs, p[f"perturbed_{axis}"], "-o", color=colour, ms=4)
      _band(ax, xs, p, f"perturbed_{axis}_", colour)
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
  canvas.save_on_writer(fig.savefig, path, bbox_inches="tight")
  plt.close(fig)
  return True


def robustness_figures(results, figdir: epath.Path) -> list[tuple[str, str]]:
  """Every figure of the robustness results: (path, caption) pairs."""
  figdir.mkdir(parents=True, exist_ok=True)
  out = []
  path = figdir / "robustness_budgets.png"
  plot_budgets(results, path)
  out.append((str(path), "Success against budget inside the sticker mask: "
              "PGD (solid, its 95% interval shaded), Square Attack (dashed, "
              "gradient-free), PGD's images under fresh physical transforms "
              "(dotted)."))
  path = figdir / "robustness_steps.png"
  plot_steps(results, path)
  out.append((str(path), "PGD success against its number of steps (95% "
              "intervals shaded)."))
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
