"""BlurNet beside other defences: its stages, the evaluation of one defence
(`evaluate`) and its report.
"""
