"""The synthetic proxy against the LISA model, in the report: the RP2
model's reading of the synthetic test split (the oracle) and the proxy
ablation's table."""

from __future__ import annotations

from typing import Any

from blurnet_jax import document as R
from blurnet_jax.study.evaluators import oracle
from blurnet_jax.study.claims import slides
from blurnet_jax.study.blocks import ci, figures_of, fmt_pct, not_run_stage, pct


def oracle_blocks(report: dict | None, figures: dict) -> list[Any]:
  """The RP2 (LISA) model's accuracy on the synthetic test split: how far
  the proxy is from LISA's look (the floor of every synthetic row)."""
  blocks: list[Any] = [R.Heading("The synthetic proxy against the LISA model")]
  if not report:
    return blocks + [not_run_stage("table1")]
  blocks.append(R.Paragraph(
      "The RP2 authors' LISA-trained model "
      f"({100 * slides.table2_row('baseline')['legit_acc']:.0f}% on LISA's "
      "own test split, the slides' baseline) "
      "classifies the synthetic test split at "
      f"{100 * report['accuracy']:.1f}% over classes 1-17, each class "
      f"weighted equally ({report['images']} images)"
      + (", its outputs read as measured on real photographs: "
         f"{oracle.map_differences(report['output_classes'])}; with "
         "mapping.txt read literally the accuracy is "
         f"{100 * report['accuracy_mapping_txt']:.1f}%"
         if "output_classes" in report else "")
      + f". Goal: {oracle.GOAL_ACCURACY:.0%} over classes 1-17 and "
      f"{oracle.GOAL_PER_CLASS:.0%} on every class. The model "
      "is a measurement, never a training signal of the generator."))
  front = report.get("front_on", {})
  rows = [[name, 100 * value,
           (f"{front[name]['correct']}/{front[name]['templates']}"
            if name in front else ""),
           ("/".join(sorted({r for r in front[name]["read_as"] if r != name}))
            if name in front else "")]
          for name, value in report["per_class"].items()]
  blocks.append(R.Table(
      ["class", "accuracy %", "front-on drawings read", "read instead as"],
      rows, formats={"accuracy %": ".0f"},
      caption="Per class: accuracy on the test split, and how many of the "
      "class's clean front-on drawings (no view angle, light or camera) the "
      "model reads; a class missed there is missed for its drawing, or for "
      "what the model learnt of it from LISA's uneven classes, not for the "
      "camera."))
  return blocks + figures_of(figures, "oracle")


def proxy_text(rows) -> str:
  return "\n".join(
      f"  {r['setting']:18s} avg {r['avg_success']:.1%} victims as stop "
      f"{fmt_pct(r['legit_acc'])}" + (
          "" if r.get("test_accuracy") is None else
          f" test {r['test_accuracy']:.1%} oracle {r['oracle_accuracy']:.1%}")
      for r in rows)


def proxy_blocks(rows, figures) -> list[Any]:
  """The proxy ablation: a table per setting, the figure, the verdict."""
  blocks: list[Any] = [R.Heading("The proxy ablation: what makes synthetic-"
                                 "trained baselines harder to attack")]
  if rows is None:
    return blocks + [not_run_stage("proxy")]
  rp2 = rows[0]
  columns = ["setting", "corruption", "balance", "train/class", "augment",
             "steps", "seeds", "test acc.", "oracle acc.", "victims stop",
             "avg success", "95% CI", "vs RP2 [95% CI]", "within 10"]
  out = []
  for r in rows:
    k, d = r.get("knobs") or {}, r.get("vs_rp2")
    out.append([
        r["setting"], k.get("corruption"), k.get("balance", ""),
        k.get("train_per_class"), "" if not k else
        ("on" if k["augment"] else "off"), k.get("steps"),
        r.get("n_seeds", 1), pct(r.get("test_accuracy")),
        pct(r.get("oracle_accuracy")), 100 * r["legit_acc"],
        100 * r["avg_success"], ci(r, "avg_success"),
        "" if d is None else (f"{100 * d['difference']:+.1f} "
                              f"[{100 * d['ci_low']:+.1f}, "
                              f"{100 * d['ci_high']:+.1f}]"),
        "" if d is None else ("yes" if r["closes_gap"] else "no")])
  fmt = {"corruption": "g", "test acc.": ".1f", "oracle acc.": ".1f",
         "victims stop": ".0f", "avg success": ".1f"}
  blocks.append(R.Table(columns, out, formats=fmt, caption=(
      "White-box RP2 grid on the 40 real victims, the RP2 model and each "
      "setting's baseline attacked with the same keys. Percent. test acc.: "
      "the setting's own synthetic test split; oracle acc.: the RP2 model "
      "on that split, classes 1-17; victims stop: real victims the model "
      "classifies as stop; vs RP2: paired difference in average success.")))
  settings = [r for r in rows if r["dataset"] == "proxy"]
  if settings:
    best = min(settings, key=lambda r: abs(r["avg_success"]
                                            - rp2["avg_success"]))
    closing = [r["setting"] for r in settings if r["closes_gap"]]
    gap = 100 * (rp2["avg_success"] - best["avg_success"])
    blocks.append(R.Paragraph(
        f"The RP2 model: {100 * rp2['avg_success']:.1f}% average success. "
        f"Closest setting: '{best['setting']}' at "
        f"{100 * best['avg_success']:.1f}% ({gap:+.1f} points below). " + (
            f"Within 10 points: {', '.join(closing)}; Table 2's defended "
            "variants belong at that setting." if closing else
            "No setting tried comes within 10 points of the RP2 model: the "
            "proxy's floor is the open limit of the synthetic Table 2 rows "
            "(their baseline is harder to attack than a LISA model, so a "
            "defence measured from it starts lower).")))
  return blocks + figures_of(figures, "proxy")

