"""Analysis of run dirs: scaling-law fits (powerlaw), learnability thresholds N* (learnability), and later
loading, predictions, figures and the report. Pure numpy/scipy/pandas; nothing here imports JAX."""
