"""T_CMP / T_ADD: the rules, the symbol sets and a train/test split that is disjoint, complete and stable."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from scaling.lm.data import sources, tasks
from tests import helpers

N = 100
VOCAB = 1024


def _sha_of_sorted_test_pairs(task) -> str:
  """Written here, independently of PairTask.split_sha256: sorted (TOK1, TOK2, LABEL) token triples."""
  triples = sorted(tuple(int(x) for x in row[:3]) for row in task.instances(task.test_ids))
  return hashlib.sha256(repr(triples).encode()).hexdigest()


_SUBPROCESS = """
import hashlib, sys
from scaling.lm.data import tasks
t = tasks.build(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
triples = sorted(tuple(int(x) for x in row[:3]) for row in t.instances(t.test_ids))
print(hashlib.sha256(repr(triples).encode()).hexdigest())
"""


@pytest.mark.parametrize("name", ["cmp", "add"])
def test_split_is_disjoint_complete_and_hash_stable_across_processes(name):
  task = tasks.build(name, 0, VOCAB)
  train, test = set(task.train_ids.tolist()), set(task.test_ids.tolist())
  assert len(test) == len(train) == N * N // 2 and not train & test and train | test == set(range(N * N))
  # The same digest from a fresh interpreter with another hash salt (stability across runs and machines).
  env = helpers.env(PYTHONHASHSEED="12345")
  out = subprocess.run([sys.executable, "-c", _SUBPROCESS, name, "0", str(VOCAB)], env=env, cwd=helpers.REPO,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  here = _sha_of_sorted_test_pairs(task)
  assert out.stdout.strip() == here
  assert _sha_of_sorted_test_pairs(tasks.build(name, 0, VOCAB)) == here  # a second in-process construction
  assert _sha_of_sorted_test_pairs(tasks.build(name, 1, VOCAB)) != here  # another seed, another split
  # The library's own digest (recorded in the run summary) agrees on equality too.
  assert task.split_sha256() == tasks.build(name, 0, VOCAB).split_sha256() != tasks.build(name, 1, VOCAB).split_sha256()


def test_symbol_sets_are_random_disjoint_content_tokens():
  cmp, add = tasks.build("cmp", 0, VOCAB), tasks.build("add", 0, VOCAB)
  for t in (cmp, add):
    assert len(set(t.symbols.tolist())) == N
    assert t.symbols.min() >= sources.N_RESERVED and t.symbols.max() < VOCAB
  assert not set(cmp.symbols.tolist()) & set(add.symbols.tolist())
  assert not np.array_equal(np.sort(cmp.symbols), np.arange(2, 2 + N))  # drawn at random, not the first ids
  assert not np.array_equal(tasks.build("cmp", 1, VOCAB).symbols, cmp.symbols)


def test_cmp_label_is_the_larger_symbol_under_one_hidden_total_order():
  t = tasks.build("cmp", 0, VOCAB)
  a, b = t.pairs.T
  lab = t.labels
  assert ((lab == a) | (lab == b)).all()
  assert (lab[a == b] == a[a == b]).all()
  # A total order: the larger-of relation is antisymmetric, and win counts are exactly 0, 1, ..., 99.
  table = lab.reshape(N, N)
  assert (table == table.T).all()
  wins = np.array([(table[i] == i).sum() - 1 for i in range(N)])  # minus the diagonal
  assert sorted(wins.tolist()) == list(range(N))
  assert not np.array_equal(np.argsort(wins), np.arange(N))  # the order is hidden, not symbol-index order


def test_add_is_addition_mod_100_under_a_hidden_bijection():
  t = tasks.build("add", 0, VOCAB)
  table = t.labels.reshape(N, N)
  for row in table:  # a Latin square
    assert len(set(row.tolist())) == N
  assert (table == table.T).all()
  zero = [e for e in range(N) if (table[e] == np.arange(N)).all()]
  assert len(zero) == 1 and zero[0] != 0  # exactly one identity, and not symbol 0
  rng = np.random.default_rng(0)
  x, y, z = rng.integers(0, N, (3, 2000))
  np.testing.assert_array_equal(table[table[x, y], z], table[x, table[y, z]])  # associative
  # Cyclic of order 100: some element generates all of it.
  g = np.flatnonzero(t.phi == 1)[0]
  acc, seen = zero[0], set()
  for _ in range(N):
    acc = table[acc, g]
    seen.add(int(acc))
  assert len(seen) == N


def test_injected_instances_are_train_pairs_only_and_deterministic():
  t = tasks.build("add", 0, VOCAB)
  inst = np.concatenate([t.train_instances(step, np.arange(64)) for step in range(200)])
  index = {int(s): i for i, s in enumerate(t.symbols)}
  ids = np.array([index[x] * N + index[y] for x, y in inst[:, :2].tolist()])
  assert set(ids.tolist()) <= set(t.train_ids.tolist())
  assert len(set(ids.tolist())) > 0.9 * len(t.train_ids)  # 12,800 draws cover most of the 5,000 train pairs
  np.testing.assert_array_equal(t.train_instances(7, [3, 9]), t.train_instances(7, [3, 9]))
  assert (inst[:, 3] == sources.EOD).all()


def test_too_small_vocabulary_is_one_clear_error():
  with pytest.raises(tasks.TaskError, match="raise data.vocab_size") as e:
    tasks.build("add", 0, 150)  # add takes the second block of 100 symbols: needs 200 content tokens
  assert "\n" not in str(e.value)
  with pytest.raises(tasks.TaskError, match="unknown task 'nope'"):
    tasks.build("nope", 0, VOCAB)


def test_registry_lists_the_paper_tasks():
  assert tasks.names() == ("add", "cmp")
  assert os.path.basename(tasks.REGISTRY["cmp"].__module__.replace(".", "/")) == "cmp"
