"""The slides' claims: the numbers quoted from the slides (`slides`), whether a
defence acted (`effects`), and the verdicts (`findings`).
"""
