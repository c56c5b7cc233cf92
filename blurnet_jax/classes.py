"""The 18-class order shared by every dataset and model of the project.

It is the order of the RP2 authors' `mapping.txt`: the 17 most frequent LISA
annotation tags in alphabetical order as 1..17, and 0 (unnamed there) for
"other" signs and background crops. Their LISA-CNN's outputs follow it from
merge (4) on, stop (14) and speedLimit45 (12) included; its outputs 0, 1, 2
answer addedLane, keepRight and laneEnds (measured on real photographs:
`blurnet_jax.data.oracle.OUTPUT_CLASSES`).
"""

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

