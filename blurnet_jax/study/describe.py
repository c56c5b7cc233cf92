"""`launch.data`'s account of a prepared data set: examples per class and
split, a contact sheet, and (for LISA's label space) the RP2 authors' model
reading the test split (how LISA-like the signs look, `oracle`).

The data layer prepares and reads; pictures and the model's reading live
here, above the models.
"""

import time

from etils import epath
import numpy as np

from blurnet_jax import jsonio
from blurnet_jax import plots
from blurnet_jax.classes import CLASS_NAMES, label_space
from blurnet_jax.data import datasets
from blurnet_jax.study.evaluators import oracle


def prepare_and_describe(config, workdir: epath.PathLike) -> dict:
  """`launch.data`: prepare, then write contact sheet and summary to workdir."""
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  builder = datasets.prepare(config)
  seconds = time.perf_counter() - start
  labels_space = label_space(config.source)
  stored = builder.data_path / "summary.json"
  first = (jsonio.read_json(stored, "data summary") if stored.exists()
           else None)
  # A set prepared by `prepare_synthetic` was summarised then; reuse that
  # rather than read every example again.
  summary = datasets.count_examples(builder, labels_space.num_classes) if first is None else {
      k: first[k] for k in ("name", "config", "path", "splits")}
  summary["class_names"] = list(labels_space.class_names)
  total = sum(s["examples"] for s in summary["splits"].values())
  summary["seconds"] = round(seconds, 2)
  if first is not None:  # the figures of the run that generated the set
    summary["prepare_seconds"] = first.get("prepare_seconds")
    summary["images_per_second"] = first.get("prepared_images_per_second")
    summary["generation_images_per_second"] = first.get(
        "generation_images_per_second")
    summary["reused"] = seconds < 0.5 * (first.get("prepare_seconds") or 0)
  else:
    summary["images_per_second"] = round(total / seconds, 1)
  per_class = getattr(config, "contact_sheet_per_class", 12)
  images, labels = datasets.load_split(builder, "train")
  plots.contact_sheet(images, labels, workdir / "contact_sheet.png",
                    per_class=per_class,
                    class_names=labels_space.class_names)
  summary["contact_sheet"] = str(workdir / "contact_sheet.png")
  if labels_space.name != "lisa":  # the RP2 model reads LISA's classes only
    jsonio.write_json(workdir / "summary.json", summary)
    return summary
  # The RP2 (LISA) model on the test split: how LISA-like the set looks.
  report = oracle.oracle_report(*datasets.load_split(builder, "test"))
  report["front_on"] = oracle.front_on_report()
  summary["oracle"] = report
  plots.confusion_figure(np.asarray(report["confusion"]),
                         workdir / "oracle_confusion.png",
                         title=oracle.figure_title(report))
  summary["oracle_confusion"] = str(workdir / "oracle_confusion.png")
  jsonio.write_json(workdir / "summary.json", summary)
  return summary




def format_summary(summary: dict) -> str:
  """A small table: examples per class and split."""
  splits = list(summary["splits"])
  lines = [f"{'class':<22}" + "".join(f"{s:>8}" for s in splits)]
  for c, name in enumerate(summary.get("class_names", CLASS_NAMES)):
    lines.append(f"{c:>2} {name:<19}" + "".join(
        f"{summary['splits'][s]['per_class'][c]:>8}" for s in splits))
  lines.append(f"{'total':<22}" + "".join(
      f"{summary['splits'][s]['examples']:>8}" for s in splits))
  lines.append(f"data: {summary['path']}")
  lines.append(f"prepared in {summary.get('prepare_seconds', summary['seconds'])}"
               f" s ({summary.get('images_per_second')} images/s end to end"
               + (f", rendering {summary['generation_images_per_second']}"
                  " images/s" if summary.get("generation_images_per_second")
                  else "") + f"); contact sheet: {summary['contact_sheet']}")
  if "oracle" in summary:
    lines.append(oracle.format_oracle(summary["oracle"]))
    lines.append(f"confusion matrix: {summary['oracle_confusion']}")
  return "\n".join(lines)
