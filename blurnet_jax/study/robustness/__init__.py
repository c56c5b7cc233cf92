"""The robustness checklist: its stages, the checklist on every model
(`checklist`), its settings, attacks, measurements, pooling, checks and
report.
"""
