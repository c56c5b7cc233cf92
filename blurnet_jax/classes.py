"""The label spaces of the project: LISA's 18-class order (every LISA-like
data set, the RP2 model) and GTSRB's 43 classes.

It is the order of the RP2 authors' `mapping.txt`: the 17 most frequent LISA
annotation tags in alphabetical order as 1..17, and 0 (unnamed there) for
"other" signs and background crops. Their LISA-CNN's outputs follow it from
merge (4) on, stop (14) and speedLimit45 (12) included; its outputs 0, 1, 2
answer addedLane, keepRight and laneEnds (measured on real photographs:
`blurnet_jax.study.evaluators.oracle.OUTPUT_CLASSES`).
"""

import dataclasses

CLASS_NAMES: tuple[str, ...] = (
    "other",
    "addedLane",
    "keepRight",
    "laneEnds",
    "merge",
    "pedestrianCrossing",
    "school",
    "schoolSpeedLimit25",
    "signalAhead",
    "speedLimit25",
    "speedLimit30",
    "speedLimit35",
    "speedLimit45",
    "speedLimitUrdbl",
    "stop",
    "stopAhead",
    "turnRight",
    "yield",
)
NUM_CLASSES: int = len(CLASS_NAMES)
STOP: int = CLASS_NAMES.index("stop")
#: The RP2 authors' target class (speedLimit45), the default of every attack.
RP2_TARGET: int = CLASS_NAMES.index("speedLimit45")
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)


#: GTSRB's 43 classes in its ClassId order (Stallkamp et al. 2012).
GTSRB_CLASS_NAMES: tuple[str, ...] = (
    "speedLimit20", "speedLimit30", "speedLimit50", "speedLimit60",
    "speedLimit70", "speedLimit80", "endSpeedLimit80", "speedLimit100",
    "speedLimit120", "noPassing", "noPassingTrucks", "rightOfWay",
    "priorityRoad", "yield", "stop", "noVehicles", "noTrucks", "noEntry",
    "generalCaution", "curveLeft", "curveRight", "doubleCurve", "bumpyRoad",
    "slipperyRoad", "roadNarrowsRight", "roadWork", "trafficSignals",
    "pedestrians", "childrenCrossing", "bicyclesCrossing", "iceSnow",
    "wildAnimals", "endAllLimits", "turnRightAhead", "turnLeftAhead",
    "aheadOnly", "straightOrRight", "straightOrLeft", "keepRight",
    "keepLeft", "roundabout", "endNoPassing", "endNoPassingTrucks",
)


@dataclasses.dataclass(frozen=True)
class LabelSpace:
  """The classes a data set's models answer, and what the attacks need of
  them: the victims' class (stop) and the default target.

  Attributes:
    name: 'lisa' (the 18-class order above) or 'gtsrb' (43 classes).
    class_names: one name per model output.
    stop: the victims' true class.
    target: the default attack target (RP2's: speedLimit45 on LISA,
      speedLimit80 on GTSRB).
  """

  name: str
  class_names: tuple[str, ...]
  stop: int
  target: int

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def targets(self) -> tuple[int, ...]:
    """Every class but stop: the targets of a full white-box grid."""
    return tuple(c for c in range(self.num_classes) if c != self.stop)


LISA = LabelSpace("lisa", CLASS_NAMES, STOP, RP2_TARGET)
GTSRB = LabelSpace("gtsrb", GTSRB_CLASS_NAMES,
                   GTSRB_CLASS_NAMES.index("stop"),
                   GTSRB_CLASS_NAMES.index("speedLimit80"))
#: The label space of each data source (`configs/data.py`'s `source`).
SOURCES: dict[str, LabelSpace] = {
    "synthetic": LISA, "lisa": LISA, "lisa_crops": LISA, "gtsrb": GTSRB}
#: Sources of real photographs, read from `data.manual_dir`.
REAL_SOURCES: tuple[str, ...] = ("lisa", "lisa_crops", "gtsrb")


def label_space(source: str) -> LabelSpace:
  """The `LabelSpace` of a data source, or a one-line error naming them."""
  if source not in SOURCES:
    raise ValueError(f"unknown data source {source!r}; use one of "
                     f"{', '.join(SOURCES)}")
  return SOURCES[source]
