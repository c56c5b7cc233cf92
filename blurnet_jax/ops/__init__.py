"""Numerical kernels below the models: convolutions and their CPU forms."""
