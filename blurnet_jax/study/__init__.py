"""The studies: the application layer over the libraries.

  studies      the registry of the four studies and their one driver
               (`run`, `render`): synthetic, real, defences, checklist
  stages       the stage runner (save, resume, headers, seconds)
  evaluation   the one evaluation call: a Population (a model and its
               members), Victims, evaluate(population, victims, key,
               measurement), the per-member key rule and the pooler
  zoo          the trained models, the RP2 data, loading a workdir
  attack       one RP2 run from a config (launch.attack)
  describe     a prepared data set's account (launch.data)
  report, blocks, figures
               the reports, rendered from saved results alone
  synthetic/   the slides' study on the synthetic proxy: stages, Table 1,
               the proxy ablation, the alpha curves
  real/        Table 2 on real photographs: stages, measurements, report
  defences/    BlurNet beside other defences: stages, evaluation, report
  robustness/  the robustness checklist: stages, the checklist, its
               settings, attacks, measurements, pooling, report
  evaluators/  what several studies measure: the white-box grid (table2),
               the RP2 model on a data set (oracle), spectral shares
  claims/      the slides' numbers, whether a defence acted, the checks
               of every evaluation, the verdicts

The data's path: data -> zoo (populations) and victims -> evaluation
(one measurement per study) -> stages -> JSON results -> report. Nothing outside this package imports it but the launchers.
"""
