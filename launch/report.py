"""Renders a finished study's report again from its JSON results.

    python -m launch.report --workdir=/tmp/blurnet_quick

Reads WORKDIR/config.json (which names the study: synthetic, real,
defences or checklist), study.json, stages.json and the stage results, and
writes WORKDIR/report/index.html and report.md by the study's renderer
(`studies.render`); trains and attacks nothing.
"""

from absl import app
from absl import flags

from launch.cli import one_line_errors, parse_flags
from blurnet_jax.study import studies

_WORKDIR = flags.DEFINE_string("workdir", None,
                               "the workdir of a launch.reproduce or launch.robustness run")
flags.mark_flags_as_required(["workdir"])


@one_line_errors
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  md = studies.render(_WORKDIR.value)
  print(f"report: {md.parent / 'index.html'} and {md}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
