"""scaling: which tasks can a model of a given size learn, and why (arXiv 2605.29548 reproduction)."""

from setuptools import find_packages, setup

# Ranges this stack was tested on (Python 3.11); upper bounds stop the next
# breaking release of a fast-moving library from landing silently.
INSTALL_REQUIRES = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "grain>=0.2.18,<0.3",
    "tensorflow-datasets>=4.9.10,<5",
    "ml-collections>=1.1.0,<2",
    "seaborn>=0.13.2,<0.14",
    "matplotlib>=3.8",
    "scipy>=1.14,<2",
    "pandas>=2.2,<4",
    "numpy>=2.0,<3",
    "absl-py>=2.1",
    "tqdm>=4.66",
    "threadpoolctl>=3.5",
]

TOKENIZERS = ["sentencepiece>=0.2.0,<0.3", "tokenizers>=0.22,<0.24"]

setup(
    name="scaling",
    version="0.1.0",
    description="Capacity, interference and rare-task retention across model scale (JAX/Flax)",
    python_requires=">=3.11",
    packages=find_packages(include=["scaling", "scaling.*", "analysis", "launch", "launch.*", "configs",
                                    "configs.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2.3", "ruff>=0.17,<0.18", *TOKENIZERS],
        "tokenizers": TOKENIZERS,  # SentencePiece and Hugging Face tokenizer files (scaling/lm/data/tokenizers.py)
        "tb": ["tensorboardX>=2.6"],
        "parquet": ["pyarrow>=15"],
        # benchmarks/train_throughput.py's PyTorch reference (never core). Pinned to the tested release, which
        # this machine serves as a local CPU wheel; an unpinned resolve can pull a multi-GB CUDA build.
        "bench": ["torch==2.13.0"],
    },
)
