"""The slides' study on the synthetic proxy: its stages, Table 1, the proxy
ablation and its report blocks, the alpha curves.
"""
