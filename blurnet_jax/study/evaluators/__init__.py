"""Evaluations every study shares: the white-box RP2 grid (`table2`), the RP2
model on a data set (`oracle`), the spectral shares (`high_frequency`).
"""
