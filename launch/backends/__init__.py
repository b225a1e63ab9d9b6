"""Where runs execute: `local` (subprocesses here), `slurm` (sbatch job arrays), `tpu` (Cloud TPU VMs via gcloud).

Every backend gets the same inputs (the sweep, the runs to start, the SweepState holding the manifest) and keeps
the same promise: it records each attempt in the manifest (start, job id, end, exit code) and never decides a
run's outcome itself when the run dir can tell (see launch/manifest.py). Backends are chosen by name through
launch/backends/registry.py; what they share is launch/backends/common.py (which imports none of them).
"""
