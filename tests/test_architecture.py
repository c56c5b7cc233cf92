"""The package's structure: imports run one way, no cycle, the RP2 assets
and both licences ship in the wheel, nothing points outside the repo."""

import ast
from pathlib import Path
import re
import subprocess
import sys
import zipfile

import pytest

from blurnet_jax import layers as layers_lib

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("blurnet_jax", "configs", "launch")
#: Modules `attacks` may never import: training, checkpoints, figures, files.
NOT_FROM_ATTACKS = ("blurnet_jax.train", "blurnet_jax.sweep",
                    "blurnet_jax.checkpoint", "blurnet_jax.checkpoint_format",
                    "blurnet_jax.plots",
                    "blurnet_jax.document", "blurnet_jax.jsonio",
                    "blurnet_jax.data", "blurnet_jax.study")


def _module_name(path: Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
  """module -> the project modules it imports (at any depth of the file),
  from the source text alone (ast)."""
  files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
  modules = {_module_name(p): p for p in files}
  graph = {}
  for name, path in modules.items():
    deps = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          base = ".".join(package.split(".")[:len(package.split(".")) -
                                              node.level + 1] +
                          ([base] if base else []))
        targets = [base] + [f"{base}.{a.name}" for a in node.names]
      else:
        continue
      for t in targets:
        # The module itself, or the deepest project module that holds it.
        while t and t not in modules:
          t = t.rpartition(".")[0]
        if t and t != name:
          deps.add(t)
    graph[name] = deps
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Every strongly connected group of more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        out.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _parent_packages(name: str) -> set[str]:
  parts = name.split(".")
  return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_cycle_finder_finds_a_cycle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert cycles(graph) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package_or_the_configs():
  graph = import_graph()
  assert "blurnet_jax.study.studies" in graph  # the walk saw the tree
  # A package's __init__ importing its own submodules is not a cycle.
  pruned = {m: {d for d in deps if d not in _parent_packages(m)}
            for m, deps in graph.items()}
  assert cycles(pruned) == []


def test_imports_run_one_way():
  graph = import_graph()
  for module, deps in graph.items():
    if module.startswith("blurnet_jax.") and not module.startswith(
        "blurnet_jax.study"):
      assert not {d for d in deps if d.startswith("blurnet_jax.study")}, (
          f"{module} imports the study layer")
    if module.startswith("blurnet_jax.attacks"):
      bad = {d for d in deps for banned in NOT_FROM_ATTACKS
             if d == banned or d.startswith(banned + ".")}
      assert not bad, f"{module} imports {sorted(bad)}"
  # Only the launchers import the study (and the study itself).
  users = {m for m, deps in graph.items()
           if any(d.startswith("blurnet_jax.study") for d in deps)}
  assert all(m.startswith(("blurnet_jax.study", "launch.")) for m in users), (
      sorted(users))


LAYERS = layers_lib.LAYERS


def layer_of(module: str) -> int | None:
  """Index in LAYERS of the longest prefix that holds `module`."""
  best, length = None, -1
  for i, (_, prefixes) in enumerate(LAYERS):
    for p in prefixes:
      if (module == p or module.startswith(p + ".")) and len(p) > length:
        best, length = i, len(p)
  return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
  """Every import of a higher layer, and every module no layer holds."""
  out = []
  for module, deps in sorted(graph.items()):
    mine = layer_of(module)
    if mine is None:
      out.append(f"{module} is in no layer; add it to LAYERS")
      continue
    for dep in sorted(deps - _parent_packages(module)):
      theirs = layer_of(dep)
      if theirs is not None and theirs > mine:
        out.append(f"{module} ({LAYERS[mine][0]}) imports {dep} "
                   f"({LAYERS[theirs][0]})")
  return out


def test_the_layer_check_names_an_upward_import():
  graph = {"blurnet_jax.data.x": {"blurnet_jax.models"},
           "blurnet_jax.models": {"blurnet_jax.data.x"},
           "tools.elsewhere": set()}
  assert upward_imports(graph) == [
      "blurnet_jax.data.x (data) imports blurnet_jax.models (models)",
      "tools.elsewhere is in no layer; add it to LAYERS"]


def test_layers_classes_data_models_losses_train_attacks_study_launch():
  assert upward_imports(import_graph()) == []


def test_no_test_file_imports_another_test_file():
  for path in (REPO / "tests").glob("test_*.py"):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom)
               else [])
      for n in names:
        assert not re.match(r"(tests\.)?(test_\w+|conftest)$", n), (
            f"{path.name} imports {n}; shared helpers go in tests/helpers.py")


def test_nothing_points_outside_the_repository():
  """No code, config, test or README line reads ../shared or REFERENCE.md
  (the benchmark may offer ../shared/bench as an optional reference)."""
  allowed = {REPO / "configs" / "benchmark.py", REPO / "README.md"}
  files = [p for d in (*PACKAGES, "tests", "notebooks")
           for p in (REPO / d).rglob("*") if p.suffix in (".py", ".ipynb")]
  for path in files + [REPO / "README.md"]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if path.name == "test_architecture.py":
        continue
      assert "REFERENCE.md" not in line, f"{path}:{number}"
      if '"shared"' in line or "../shared" in line:
        assert path in allowed and "bench" in line, f"{path}:{number}: {line}"


def test_docstrings_hold_no_measured_figures():
  """Measured speeds live in the README and benchmark.json, not in code."""
  pattern = re.compile(r"\d[\d,.]*\s*(images/s|GFLOP/s|TFLOP/s|steps/s|"
                       r"ms per|x faster|% faster|% slower)")
  for path in (REPO / "blurnet_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                           ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node) or ""
        assert not pattern.search(doc), (path, pattern.search(doc)[0])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
  out = tmp_path_factory.mktemp("wheel")
  proc = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
       "-q", "-w", str(out), str(REPO)], capture_output=True, text=True,
      timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (path,) = out.glob("blurnet_jax-*.whl")
  return path


def test_the_wheel_ships_the_rp2_assets_and_both_licences(wheel):
  names = set(zipfile.ZipFile(wheel).namelist())
  rp2 = "blurnet_jax/data/rp2/"
  for f in ("rp2_lisa_cnn.npz", "LICENSE", "NOTICE", "mapping.txt",
            "printable_colors.txt", "masks/octagon.png",
            "masks/mask_l1loss_uniform_rectangles.png"):
    assert rp2 + f in names, f
  assert len([n for n in names if n.startswith(rp2 + "victim-set/")
              and n.endswith(".png")]) == 40
  licences = [n for n in names if ".dist-info/licenses/" in n]
  assert any(n.endswith("licenses/LICENSE") for n in licences), licences
  assert any(n.endswith("rp2/LICENSE") for n in licences), licences
  with zipfile.ZipFile(wheel) as z:
    top = next(n for n in licences if n.endswith("licenses/LICENSE"))
    assert b"Apache License" in z.read(top)
    assert b"MIT License" in z.read(rp2 + "LICENSE")
  assert rp2 + "SHA256SUMS" in names
  for pkg in ("blurnet_jax/study/studies.py", "launch/report.py",
              "configs/reproduce.py", "blurnet_jax/ops/conv.py"):
    assert pkg in names, pkg


#: A module a reader can hold, and a study function one can read at once.
MAX_MODULE_LINES = 500
MAX_STUDY_FUNCTION_LINES = 60


def oversized(files: dict[str, str]) -> list[str]:
  """Modules over MAX_MODULE_LINES and functions of `blurnet_jax.study`
  over MAX_STUDY_FUNCTION_LINES, by name, from {module: source}."""
  out = []
  for module, text in sorted(files.items()):
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
      out.append(f"{module}: {lines} lines > {MAX_MODULE_LINES}")
    if not module.startswith("blurnet_jax.study"):
      continue
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        length = node.end_lineno - node.lineno + 1
        if length > MAX_STUDY_FUNCTION_LINES:
          out.append(f"{module}.{node.name}: {length} lines > "
                     f"{MAX_STUDY_FUNCTION_LINES}")
  return out


def test_the_size_check_names_a_long_module_and_a_long_study_function():
  body = "".join(f"  x{i} = {i}\n" for i in range(MAX_STUDY_FUNCTION_LINES))
  long_function = f"def f():\n{body}"
  assert oversized({"blurnet_jax.study.a": long_function,
                    "blurnet_jax.ops.b": long_function,
                    "blurnet_jax.c": "x = 1\n" * (MAX_MODULE_LINES + 1)}) == [
      f"blurnet_jax.c: {MAX_MODULE_LINES + 1} lines > {MAX_MODULE_LINES}",
      f"blurnet_jax.study.a.f: {MAX_STUDY_FUNCTION_LINES + 1} lines > "
      f"{MAX_STUDY_FUNCTION_LINES}"]


def test_modules_and_study_functions_stay_readable():
  files = {_module_name(p): p.read_text()
           for p in (REPO / "blurnet_jax").rglob("*.py")}
  assert oversized(files) == []


#: Modules a reader can find their way among in one folder.
MAX_MODULES_PER_FOLDER = 12


def test_the_study_is_in_subpackages_a_reader_can_navigate():
  """blurnet_jax/study/: a runner, a registry and a subpackage per study
  (synthetic, real, defences, robustness) beside the shared evaluators
  and claims, no folder over MAX_MODULES_PER_FOLDER modules."""
  study = REPO / "blurnet_jax" / "study"
  subpackages = sorted(p.name for p in study.iterdir()
                       if (p / "__init__.py").exists())
  assert subpackages == ["claims", "defences", "evaluators", "real",
                         "robustness", "synthetic"]
  for folder in [study, *(study / s for s in subpackages)]:
    modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= MAX_MODULES_PER_FOLDER, (folder, len(modules))
  for name in ("synthetic", "real", "defences", "robustness"):
    assert (study / name / "stages.py").exists(), name


#: What chooses a study: a config's `study` field, its real data source,
#: or which result files a workdir holds. Only the registry reads them so.
DISPATCH = re.compile(r"REAL_SOURCES|config\.study\b|get\(\"study\"|"
                      r"\"defences\.json\"\)\.exists")


def test_the_registry_alone_chooses_a_study():
  """`studies.STUDIES` is the one dispatch: no other module of the study
  or the launchers branches on a config's study, its source or files on
  disk (defences/stages.check only refuses a synthetic source)."""
  allowed = {"blurnet_jax/study/studies.py": None,
             "blurnet_jax/study/defences/stages.py": "REAL_SOURCES"}
  for path in [*(REPO / "blurnet_jax" / "study").rglob("*.py"),
               *(REPO / "launch").glob("*.py")]:
    rel = path.relative_to(REPO).as_posix()
    for number, line in enumerate(path.read_text().splitlines(), 1):
      found = DISPATCH.search(line)
      if found and rel in allowed:
        assert allowed[rel] in (None, found[0]), f"{rel}:{number}: {line}"
      else:
        assert not found, f"{rel}:{number} chooses a study: {line}"


def test_each_config_file_picks_its_study_and_the_page_is_the_registry():
  from blurnet_jax.study import studies  # pylint: disable=g-import-not-at-top
  from configs import defences, reproduce, robustness  # pylint: disable=g-import-not-at-top
  real = reproduce.get_config("quick")
  real.data.source = "lisa_crops"
  picked = {name: studies.for_config(c).name for name, c in (
      ("reproduce", reproduce.get_config("quick")), ("real", real),
      ("defences", defences.get_config("quick")),
      ("alias", robustness.get_config("defences,quick")),
      ("checklist", robustness.get_config("runlocal")))}
  assert picked == {"reproduce": "synthetic", "real": "real",
                    "defences": "defences", "alias": "defences",
                    "checklist": "checklist"}
  assert [s.name for s in studies.STUDIES] == [
      "synthetic", "real", "defences", "checklist"]
  odd = robustness.get_config("runlocal")
  odd.study = "tables"
  with pytest.raises(ValueError, match="is no study") as e:
    studies.for_config(odd)
  assert "\n" not in str(e.value)
  page = (REPO / "docs" / "studies.md").read_text()
  assert page == studies.describe(), (
      "docs/studies.md is stale: write studies.describe() to it")


#: A per-member loop that picks its own attack key: a fold_in of a seed,
#: or seeds zipped with members.
_PER_MEMBER_KEY = re.compile(
    r"fold_in\([^()]*\bseeds?\b[^()]*\)|zip\([^()]*\bseeds\b[^()]*\bmembers\b")


def test_the_per_member_key_rule_lives_in_the_one_evaluation_call():
  """Every study row's members are attacked through
  `study.evaluation.evaluate`, whose `member_key` is the only place a
  member's seed picks its attack key."""
  offenders = []
  for path in sorted((REPO / "blurnet_jax" / "study").rglob("*.py")):
    if path.name == "evaluation.py":
      continue
    for n, line in enumerate(path.read_text().splitlines(), 1):
      code = line.split("#")[0]
      if _PER_MEMBER_KEY.search(code) and not code.strip().startswith(
          ("\"", "'", "`")):
        offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
  assert not offenders, offenders
  text = (REPO / "blurnet_jax" / "study" / "evaluation.py").read_text()
  assert "def member_key(" in text and "def evaluate(" in text
