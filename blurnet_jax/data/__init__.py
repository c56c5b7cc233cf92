"""Data: the synthetic sign set, LISA, victim sets, masks and the input pipeline."""
