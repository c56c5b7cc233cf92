"""The 18-class order shared by every dataset and model of the project.

It is the output order of the RP2 authors' LISA-CNN: output 0 has no name in
their mapping (we use it for "other" signs and background crops), outputs
1..17 are the 17 most frequent LISA annotation tags in alphabetical order.
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

