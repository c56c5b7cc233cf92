"""The BlurNet study: the application layer over the libraries.

  zoo          the variant zoo: trains (or reuses) each model, the RP2 data
  table1       black-box transfer of a perturbation to inserted fixed filters
  table2       the white-box RP2 grid on every trained variant
  spectra      high-frequency shares and the slides' spectrum figures
  sweeps       alpha populations, each member attacked
  robustness   the robustness checklist (launch.robustness)
  attack       one RP2 run from a config (launch.attack)
  slides       every number quoted from the slides
  report       the report, rendered from a finished run's JSON results
  stages       the stage runner (headers, seconds)
  reproduce    the study end to end (launch.reproduce)

The data's path: data -> zoo -> attacks -> stages -> JSON results ->
report. Nothing outside this package imports it.
"""
