"""Every number the study quotes from the BlurNet slides, once."""

#: Table 1: accuracy on the 40 victims and attack success rate, per row.
TABLE1 = {
    "baseline": (1.0, 0.90),
    "input_3x3": (1.0, 0.875),
    "input_5x5": (1.0, 0.675),
    "l1_3x3": (1.0, 0.65),
    "l1_5x5": (0.875, 0.175),
}
#: The columns of a `TABLE2` row.
TABLE2_COLUMNS = ("alpha", "legit_acc", "avg_success", "worst_success",
                  "l2_distortion")
#: Table 2: alpha, legitimate accuracy, average and worst white-box
#: success, L2 dissimilarity, per variant.
TABLE2 = {
    "baseline": (0.0, 0.91, 0.4918, 0.90, 0.207),
    "linf_3x3": (1e-5, 0.863, 0.30, 0.55, 0.201),
    "linf_5x5": (0.1, 0.863, 0.2411, 0.475, 0.189),
    "linf_7x7": (0.1, 0.87, 0.1161, 0.30, 0.203),
    "tv_1e-4": (1e-4, 0.856, 0.0792, 0.175, 0.224),
    "tv_1e-5": (1e-5, 0.823, 0.0847, 0.30, 0.199),
}


#: A variant of a penalty at an alpha the slides did not train (e.g. TV
#: where it acts on the maps) carries the claim of that penalty at the
#: slides' alpha: TV cuts white-box success to 7.9%.
CLAIM_OF = {"tv": "tv_1e-4"}


def table2_row(variant: str) -> dict[str, float]:
  """The slides' Table 2 row of `variant` by column, or of the penalty's
  claim (`CLAIM_OF`) for an alpha the slides did not train ({} if
  none)."""
  name = variant if variant in TABLE2 else CLAIM_OF.get(
      variant.split("_")[0], "")
  return dict(zip(TABLE2_COLUMNS, TABLE2[name])) if name in TABLE2 else {}
