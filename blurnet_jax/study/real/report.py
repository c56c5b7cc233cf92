"""The report of a real-data study (`study.real`), from its JSON results:
the findings, the data and the victims, Table 2 per victim set with the
treatment checks, and the RP2 model's reading of the LISA crops."""

from __future__ import annotations

from typing import Any

from blurnet_jax import document as R
from blurnet_jax.data import sources
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.study import blocks as B


def _ratio(t: dict[str, Any] | None, key: str) -> str:
  if t is None:
    return ""
  r = t[key]
  mark = "*" if key in t["checked"] else ""
  return f"{r['ratio']:.2f}{mark} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def _treatment_block(rows, caption) -> R.Table:
  columns = ["variant", "TV of L1 maps (x baseline)",
             "high-freq. gain of the filter", "acc. vs baseline (points)",
             "acted", "verdict", "reason"]
  base = next(r for r in rows if r["variant"] == "baseline")
  out = []
  for r in rows:
    if r is base:
      continue
    t = r.get("treatment")
    out.append([r["variant"], _ratio(t, "tv"), _ratio(t, "hf_gain"),
                100 * (r["legit_acc"] - base["legit_acc"]),
                "" if t is None else ("yes" if t["acted"] else "no"),
                r.get("verdict", {}).get("verdict", ""),
                r.get("verdict", {}).get("reason", "")])
  return R.Table(columns, out, caption=caption,
                 formats={"acc. vs baseline (points)": "+.1f"})


def _victims_block(victims: dict[str, Any]) -> R.Table:
  columns = ["set", "what", "candidates", "near-duplicates excluded",
             "victims", "tracks"]
  rows = [[name, v["description"], v["candidates"],
           v["excluded_near_duplicates"], v["victims"], v.get("tracks")]
          for name, v in victims.items()]
  return R.Table(columns, rows, caption=(
      "Victims, fixed before any model was trained. A near-duplicate is "
      "an image whose mean absolute pixel difference to a training image "
      "(held-out sets: a training stop sign; the RP2 victims: any crop) is "
      "below 5/255."))


def _oracle_blocks(o: dict[str, Any] | None, figures) -> list[Any]:
  if o is None:
    return []
  per = [[name, 100 * v] for name, v in o["per_class"].items()]
  confirmed = ("the same as" if o["map_confirmed"] else "NOT the same as")
  return [
      R.Heading("The RP2 model on the real LISA crops"),
      R.Paragraph(
          f"The RP2 authors' LISA-trained model on all {o['images']} crops "
          f"(train and test split), classes 1-17 equally weighted: "
          f"{100 * o['accuracy']:.1f}% with the project's output map, "
          f"{100 * o['accuracy_mapping_txt']:.1f}% with the authors' "
          "mapping.txt read literally. The map the crops imply (each "
          "output's most frequent true class) is "
          f"{o['measured_output_map']}, {confirmed} the project's "
          f"{o['output_classes']} ({oracle.map_differences(o['output_classes'])})."
          " The RP2 model was trained on LISA, likely on these very signs: "
          "the figure is a check of the output map and of the crops' "
          "labels, not a held-out accuracy."),
      R.Table(["class", "accuracy (%)"], per, formats={"accuracy (%)": ".1f"},
              caption="Per-class accuracy of the RP2 model on the crops."),
      *B.figures_of(figures, "oracle"),
  ]


def _opening(config, results: dict[str, Any]) -> R.Paragraph:
  """The run, its source, environment and data."""
  meta = results["study"]
  env = meta["environment"]
  return R.Paragraph(
      f"Run `{config.name}` of `launch.reproduce` on the real source "
      f"`{meta['source']}` ({meta['rests_on']}; "
      f"{len(meta['class_names'])} classes), seed {config.seed}; jax "
      f"{env['jax']}, flax {env['flax']}, backend {env['backend']} "
      f"({env['device_kind']}). Data: {sources.data_line(results['data'])}"
      ". The data set's licence allows research use only; cite its "
      "authors (README, 'Data').")


def _settings_block(config, meta: dict[str, Any]) -> R.Bullets:
  """The variants, training, white-box grid and what counts as success."""
  real = config.real
  steps = real.num_train_steps[meta["labels"]]
  folds = int(real.get("folds", 0))
  replication = (
      f"{folds} folds of a grouped k-fold by track x seeds "
      f"{tuple(real.seeds)}: each variant trained once per fold and "
      f"seed, attacked on its fold's held-out stop tracks "
      f"({real.frames_per_sign} frames each); the data line's split is "
      "the oracle's" if folds else
      f"seeds {tuple(real.seeds)} (one vmapped population per variant)")
  return R.Bullets([
      f"variants: {', '.join(real.variants)}; {replication}",
      f"training: {steps} steps of {config.batch_size} images, learning "
      f"rate {real.learning_rate}, from scratch",
      f"white-box RP2 grid: targets "
      f"{tuple(real.grid.targets[meta['labels']]) or 'all but stop'}, "
      f"{real.grid.steps} steps x {real.grid.num_transforms} "
      f"transforms, evaluated under {real.grid.eval_transforms} "
      "transforms; the RP2 authors' camouflage rectangles mask",
      "success: the prediction changed, counted over the victims the "
      "model (each seed) classifies as stop before the attack; paired "
      "differences over the victims both models classify as stop",
  ])


def _curve_block(rows, dataset) -> list[Any]:
  """The convergence curve of each row (white-box success against the
  attack's steps), where the study ran one."""
  rows = [r for r in rows if r.get("curve")]
  if not rows:
    return []
  steps = [p["steps"] for p in rows[0]["curve"]["points"]]
  return [R.Table(
      ["variant"] + [f"{s} steps" for s in steps] + ["levelled"],
      [[r["variant"]] + [
          f"{100 * p['mean']:.1f} [{100 * p['ci_low']:.1f}, "
          f"{100 * p['ci_high']:.1f}]" for p in r["curve"]["points"]]
       + ["yes" if r["curve"]["levelled"] else "no"] for r in rows],
      caption=(f"{dataset}: average white-box success (percent, 95% "
               "intervals) against the RP2 attack's steps, same victims "
               "and keys; levelled: the longest attack moved it less than "
               "2 points, or stayed inside the shorter one's interval "
               "(else the verdict is read before the attack converged)."))]


def _table2_blocks(rows: list[dict[str, Any]]) -> list[Any]:
  """Per victim set: Table 2, then whether each defence acted."""
  out: list[Any] = []
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    part = [r for r in rows if r["dataset"] == dataset]
    counted = ", ".join(
        f"{r['variant']} {'/'.join(map(str, r['victims_recognised']))}"
        for r in part)
    out += [
        B.table2_block(part, (
            f"{dataset}: clean accuracy on the whole held-out split, "
            f"white-box success in percent with 95% intervals; victims of "
            f"{part[0]['victims']} classified as stop, per seed: "
            f"{counted}. 'signs': the independent physical signs behind "
            "the success figures (frames of one video track are one sign: "
            "every interval and paired difference takes the sign as its "
            "unit; p is McNemar's exact test over victims, or the t-test "
            "over signs where victims share signs).")),
        *_curve_block(part, dataset),
        _treatment_block(part, (
            f"{dataset}: did each defence act? Geometric mean ratios to "
            "the baseline of the same seed on held-out images, 95% "
            "intervals; * marks the measure that decides (a TV penalty: "
            "the TV; an L1 filter: the high-frequency share of what it passes "
            "over that of what it is given; an input filter: the L1 maps' "
            "share against the baseline's). A verdict is only "
            "read when it fell and clean accuracy is within 2 points.")),
    ]
  return out


def _plan_blocks(p: dict[str, Any] | None) -> list[Any]:
  """What a decisive run needs, this run as the pilot (plan.json)."""
  if not p or not p.get("claims"):
    return []
  d = p["chosen"]
  rows = [[c["dataset"], c["variant"],
           f"{100 * c['pilot']['difference']:+.1f} "
           f"[{100 * c['pilot']['ci_low']:+.1f}, "
           f"{100 * c['pilot']['ci_high']:+.1f}]",
           100 * c["target"],
           None if d is None else
           100 * d["half_widths"][f"{c['dataset']} / {c['variant']}"],
           f"{c['dataset']} / {c['variant']}" in p["decided_by_pilot"]]
          for c in p["claims"]]
  design = ("no design fits the budget" if d is None else
            f"{d['folds']} folds x {d['seeds']} seed(s) x "
            f"{d['frames_per_sign']} frames per sign, {d['minutes']:.0f} min "
            "predicted, " + ("every target met" if d["meets_targets"] else
                             "the closest within the budget"))
  return [R.Heading("Plan for a decisive run"), R.Table(
      ["victims", "variant", "this run [95% CI]", "target half-width",
       "planned half-width", "decided already"], rows,
      caption=(f"This run as the pilot: each claim's target is half the "
               f"slides' cut scaled to its baseline; the planned design "
               f"({design}; budget {p['budget_minutes']:g} min) predicts "
               "its half-width from the pilot's variance components "
               "(replicates, signs, frames). 'Decided already': the "
               "interval lies wholly on one side of half the cut."),
      formats={"target half-width": ".1f", "planned half-width": ".1f"})]


def blocks(config, results: dict[str, Any]) -> list[Any]:
  """The report's blocks (see the module doc), one section after another."""
  meta = results["study"]
  figures = meta["figures"]
  return [
      _opening(config, results),
      R.Heading("Findings"),
      *B.findings_blocks(results.get("findings")),
      R.Heading("Settings"),
      _settings_block(config, meta),
      R.Heading("Victims"),
      _victims_block(results.get("victims") or {}),
      *B.figures_of(figures, "victims"),
      R.Heading("Table 2 on real photographs"),
      *B.figures_of(figures, "table2"),
      *_table2_blocks(results["table2"]),
      *_plan_blocks(results.get("plan")),
      *_oracle_blocks(results.get("oracle"), figures),
      R.Heading("Seconds per stage"),
      R.Table(["stage", "seconds"],
              [[k, v] for k, v in results["stages"].items()]),
  ]
