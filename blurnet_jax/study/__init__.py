"""The studies: the application layer over the libraries.

  studies           the registry of the four studies and their one driver
                    (`run`, `render`): synthetic, real, defences, checklist
  stages            the stage runner (save, resume, headers, seconds)
  synthetic_stages  the slides' study on the synthetic proxy
  real_stages       Table 2 on real photographs (`real`: its measurements)
  defence_stages    BlurNet beside other defences (`defence_eval`)
  checklist_stages  the robustness checklist (`robustness*`)
  zoo               the trained models, the RP2 data, loading a workdir
  table1, table2    black-box transfer; the white-box RP2 grid
  high_frequency    spectral shares; alpha_curves: the sweeps
  effects, findings whether a defence acted; the claims' verdicts
  oracle, proxy     the RP2 model on a data set; the proxy ablation
  attack            one RP2 run from a config (launch.attack)
  slides            every number quoted from the slides
  report, *_report  the reports, rendered from saved results alone

The data's path: data -> zoo -> attacks -> stages -> JSON results ->
report. Nothing outside this package imports it but the launchers.
"""
