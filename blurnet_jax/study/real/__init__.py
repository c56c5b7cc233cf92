"""Table 2 on real photographs: its stages, its measurements (`measure`:
victims, Table 2 rows, the oracle) and its report.
"""
