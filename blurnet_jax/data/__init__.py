"""Data: the synthetic sign set, LISA, victim sets, masks and the input pipeline."""

from blurnet_jax.data.common import features, to_float
from blurnet_jax.data.datasets import (SyntheticSigns, SyntheticSignsConfig,
                                       count_examples, load_split,
                                       prepare_synthetic)
from blurnet_jax.data.lisa import Lisa, LisaConfig, prepare_lisa
from blurnet_jax.data.lisa_annotations import read_annotations, split_records
from blurnet_jax.data.lisa_examples import crop_box
from blurnet_jax.data.masks import (BUILTIN_MASKS, camouflage_mask, get_mask,
                                    load_mask, octagon_mask,
                                    random_rectangles_mask)
from blurnet_jax.data.synthetic import (generate_split, render,
                                        synthetic_victims)
from blurnet_jax.data.victims import load_victims, load_victims_with_names
