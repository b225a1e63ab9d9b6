"""Analysis of run dirs (numpy/scipy/pandas/matplotlib; nothing here imports JAX).

load (+ loadreport): sweep dirs -> tidy table. Fits: fitcore (laws, objective, solver), fitresult, profile + targets
(profile-likelihood intervals), bootstrap, powerlaw (the API and `python -m analysis.powerlaw`). learnability (N*),
frontier (N*(f), f*(N), Prop 6), upsampling and plan (`python -m analysis.plan`), curves (what is fitted, per task),
predictions (Fig 1, Chinchilla, the toy's exact theory), synthetic (known-law draws for calibration checks),
figures/, report (`python -m analysis.report --sweep_dir DIR`: report_doc, report_sections, report_predictions).
"""
