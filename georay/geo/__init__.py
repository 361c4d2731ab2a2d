"""Pure geography for georay: distances, H3 cells, an offline gazetteer and the metrics.

Nothing here imports Ray or torch; every function is vectorized over NumPy arrays.
"""
