"""Analysis of run dirs: load (sweep dirs -> tidy table), powerlaw (fits, bootstrap CIs), learnability (N*),
curves (what is fitted, per task), predictions (Fig 1, Chinchilla, the toy's exact theory), figures, report
(`python -m analysis.report --sweep_dir DIR`). numpy/scipy/pandas/matplotlib; nothing here imports JAX."""
