"""The house rules, checked: lint clean, no import cycles, small modules and functions, a README tour that points
at files that exist."""

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("scaling", "launch", "analysis")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, str]:
  """Dotted module name -> path, for every module of the library packages (and configs/)."""
  out = {}
  for top in (*PACKAGES, "configs"):
    for root, _, files in os.walk(os.path.join(REPO, top)):
      for f in files:
        if f.endswith(".py"):
          path = os.path.join(root, f)
          rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
          out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def import_graph(modules: dict[str, str]) -> dict[str, set[str]]:
  """module -> the library modules it imports (anywhere in the file, function-level imports included)."""
  graph = {}
  for name, path in modules.items():
    deps = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                   for a in node.names]
      deps.update(t for t in targets if t in modules and t != name)
    graph[name] = deps
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  sys.setrecursionlimit(10_000)
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_cycle_finder_finds_a_planted_cycle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
  assert cycles(graph) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
  modules = {k: v for k, v in _modules().items() if k.split(".")[0] in PACKAGES}
  found = cycles(import_graph(modules))
  assert not found, f"import cycles: {found}"


def test_library_does_not_import_configs():
  modules = _modules()
  graph = import_graph(modules)
  bad = sorted(m for m, deps in graph.items() if m.split(".")[0] in PACKAGES
               for d in deps if d.split(".")[0] == "configs")
  assert not bad, f"library modules importing configs/: {bad}"


def test_modules_and_functions_are_small():
  too_long = []
  for name, path in _modules().items():
    text = open(path).read()
    if name.split(".")[0] in PACKAGES and len(text.splitlines()) > MAX_MODULE_LINES:
      too_long.append(f"{name}: {len(text.splitlines())} lines")
    for node in ast.walk(ast.parse(text, path)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        config_fields = name.startswith("configs.") and node.name == "get_config"  # a list of fields
        if n > MAX_FUNCTION_LINES and not config_fields:
          too_long.append(f"{name}.{node.name}: {n} lines")
  assert not too_long, f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function: {too_long}"


def test_readme_tour_names_files_that_exist():
  text = open(os.path.join(REPO, "README.md")).read()
  tour = text.split("## A short tour", 1)[1].split("\n## ", 1)[0]
  paths = [p for p in re.findall(r"`([^`\s]+)`", tour) if "/" in p or p.endswith(".py")]
  assert len(paths) >= 15, paths
  missing = [p for p in paths if not os.path.exists(os.path.join(REPO, p.rstrip("/")))]
  assert not missing, f"README tour names missing paths: {missing}"


def test_ruff_passes():
  ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
  if not os.path.exists(ruff):
    pytest.fail("ruff is not installed; it is part of the `test` extra: pip install -e '.[test]'")
  proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
