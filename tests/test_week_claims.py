"""Every week claim in a docstring of medseg_edu is checked against the notebooks' code cells.

Two forms of claim are allowed (house style, DESIGN.md):

* ``Taught in week N.`` (or ``weeks N and M``; a module may add a short note in brackets after a week:
  ``Taught in week 2 (volumes, slices) and week 5 (sites).``). It holds when the code cells of
  ``course/weekN_*.ipynb`` reference the object itself: ``from medseg_edu.metrics import dice_score``
  followed by a use of ``dice_score``, ``metrics.dice_score`` after ``from medseg_edu import metrics``,
  ``mu.dice_score`` after ``import medseg_edu as mu``. Names are resolved to objects, so a notebook's
  own function of the same name does not count. For a module docstring the claim holds when the notebook
  references the module or any object defined in it.
* ``Used in week N through `f`.`` It holds when week N's code cells reference ``f`` (as above) and ``f``'s
  source references the object, directly or through other medseg_edu functions it calls.

Any other mention of a week ("week 6", "weeks 2 and 5", "week-3") in a function's or class's docstring is
reported, so an unchecked claim cannot hide in prose. Hidden-test regions of a notebook
(``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``) are not part of the lesson and do not count.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import pkgutil
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "course"
PACKAGE = "medseg_edu"

# ---------------------------------------------------------------------------------------------------
# Parsing the claims of one docstring
# ---------------------------------------------------------------------------------------------------

_NOTE = r"(?:\s\((?:(?!week)[^()])*\))?"  # an optional note in brackets that names no week
_WEEK_REF = r"week\s(\d+)" + _NOTE
_WEEK_LIST = (rf"(?:{_WEEK_REF}(?:,\s{_WEEK_REF})*(?:,?\sand\s{_WEEK_REF})?"
              r"|weeks\s(\d+(?:,\s\d+)*,?\sand\s\d+))")
_CLAIM_START = re.compile(r"\b(Taught|Used) in\s+weeks?\b")
_TAUGHT = re.compile(rf"Taught in\s({_WEEK_LIST})\.")
_NAME = r"`[A-Za-z_][A-Za-z0-9_.]*`"
_NAMES = rf"{_NAME}(?:(?:,\s|,?\sand\s){_NAME})*"
_USED_PART = rf"({_WEEK_LIST})\sthrough\s({_NAMES})"
_USED = re.compile(rf"Used in\s{_USED_PART}(?:,?\sand\sin\s{_USED_PART})*\.")
_USED_PARTS = re.compile(rf"in\s{_USED_PART}")
_ANY_WEEK = re.compile(r"\bweeks?[\s-]+\d", re.IGNORECASE)


@dataclass(frozen=True)
class Claim:
    kind: str  # "taught" or "used"
    week: int
    through: Optional[str] = None


def _weeks_in(text: str) -> List[int]:
    return [int(n) for n in re.findall(r"\d+", re.sub(r"\([^()]*\)", "", text))]


def parse_claims(doc: Optional[str]) -> Tuple[List[Claim], List[str]]:
    """Claims in a docstring, and problems: claims that do not follow the grammar, weeks in prose."""
    text = " ".join((doc or "").split())
    claims: List[Claim] = []
    problems: List[str] = []
    covered: List[Tuple[int, int]] = []
    for start in _CLAIM_START.finditer(text):
        pattern = _TAUGHT if start.group(1) == "Taught" else _USED
        match = pattern.match(text, start.start())
        if match is None:
            snippet = text[start.start():start.start() + 80]
            problems.append(f"claim does not follow the grammar: {snippet!r}")
            covered.append((start.start(), start.end()))
            continue
        covered.append(match.span())
        if pattern is _TAUGHT:
            claims.extend(Claim("taught", week) for week in _weeks_in(match.group(1)))
            continue
        for part in _USED_PARTS.finditer(match.group(0)):  # every (week, function) pair is one claim
            week_text, names_text = part.group(1), part.group(part.lastindex)
            for week in _weeks_in(week_text):
                claims.extend(Claim("used", week, name) for name in re.findall(r"`([^`]+)`", names_text))
    for mention in _ANY_WEEK.finditer(text):
        if not any(a <= mention.start() < b for a, b in covered):
            snippet = text[max(0, mention.start() - 30):mention.end() + 30]
            problems.append(f"week mentioned outside a claim: {snippet!r}")
    return claims, problems


# ---------------------------------------------------------------------------------------------------
# What a notebook references
# ---------------------------------------------------------------------------------------------------

_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*$", re.M | re.S)


def code_of_notebook(nb: nbformat.NotebookNode) -> List[str]:
    """The source of each code cell."""
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def lesson_code(source: str) -> str:
    """A code cell as the lesson shows it: hidden tests removed, IPython magics blanked."""
    source = _HIDDEN.sub("", source)
    # a magic becomes `pass` at its indentation: blanking it would leave an empty block (`try:` / `if ...:`)
    lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
             for line in source.splitlines()]
    return "\n".join(lines)


def resolve(dotted: str) -> Any:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


class _References(ast.NodeVisitor):
    """Walk code in order; bindings map a local name to the dotted medseg_edu path it was imported as."""

    def __init__(self, package: str):
        self.package = package
        self.bindings: Dict[str, str] = {}
        self.paths: List[str] = []

    def _ours(self, module: str) -> bool:
        return module == self.package or module.startswith(self.package + ".")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self._ours(alias.name):
                self.bindings.pop((alias.asname or alias.name).split(".")[0], None)
            elif alias.asname:
                self.bindings[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.bindings[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        ours = node.level == 0 and node.module is not None and self._ours(node.module)
        for alias in node.names:
            local = alias.asname or alias.name
            if ours and alias.name != "*":
                self.bindings[local] = f"{node.module}.{alias.name}"
            else:
                self.bindings.pop(local, None)

    def _rebind(self, name: str) -> None:
        self.bindings.pop(name, None)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self._rebind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(expr)
        self._rebind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)  # the value is evaluated before the targets are bound
        for target in node.targets:
            self.visit(target)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id in self.bindings:
                self.paths.append(self.bindings[node.id])
        else:
            self._rebind(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain: List[str] = []
        inner: ast.AST = node
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load) and inner.id in self.bindings:
            path = self.bindings[inner.id]
            self.paths.append(path)
            for attr in reversed(chain):
                path = f"{path}.{attr}"
                self.paths.append(path)
        else:
            self.generic_visit(node)


def referenced_paths(cells: Iterable[str], package: str = PACKAGE) -> List[str]:
    """Dotted paths of package objects that the code uses (in order of use)."""
    visitor = _References(package)
    for index, source in enumerate(cells):
        try:
            tree = ast.parse(lesson_code(source))
        except SyntaxError as error:
            raise ValueError(f"code cell {index} does not parse: {error}") from error
        visitor.visit(tree)
    return visitor.paths


def referenced_objects(cells: Iterable[str], package: str = PACKAGE) -> List[Any]:
    """The objects behind ``referenced_paths``; a path that does not resolve (an attribute of an
    instance, a typo) names no package object and is left out."""
    objects, seen = [], set()
    for path in referenced_paths(cells, package):
        if path in seen:
            continue
        seen.add(path)
        try:
            objects.append(resolve(path))
        except (ImportError, AttributeError):
            pass
    return objects


# ---------------------------------------------------------------------------------------------------
# What a package function references (for "Used in week N through `f`")
# ---------------------------------------------------------------------------------------------------

def _in_package(obj: Any, package: str) -> bool:
    module = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    return isinstance(module, str) and (module == package or module.startswith(package + "."))


def _namespace(obj: Any) -> Dict[str, Any]:
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    space = dict(vars(module)) if module else {}
    space.update(getattr(obj, "__globals__", {}))
    return space


def calls_through(func: Any, target: Any, package: str = PACKAGE, _seen: Optional[set] = None) -> bool:
    """Whether ``func``'s source references ``target``, directly or through package functions it uses."""
    seen = set() if _seen is None else _seen
    if id(func) in seen:
        return False
    seen.add(id(func))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError):
        return False
    space = _namespace(func)
    module_name = getattr(func, "__module__", package)
    found: List[Any] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in space and not hasattr(builtins, node.id):
                found.append(space[node.id])
        elif isinstance(node, ast.Attribute):
            chain, inner = [], node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in space:
                obj = space[inner.id]
                for attr in reversed(chain):
                    obj = getattr(obj, attr, None)
                    if obj is None:
                        break
                    found.append(obj)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module_name.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                try:
                    found.append(resolve(f"{base}.{alias.name}"))
                except (ImportError, AttributeError):
                    pass
    for obj in found:
        if obj is target:
            return True
    for obj in found:
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and _in_package(obj, package):
            if calls_through(obj, target, package, seen):
                return True
    return False


# ---------------------------------------------------------------------------------------------------
# The package's docstrings
# ---------------------------------------------------------------------------------------------------

@dataclass
class Owner:
    module: str
    name: str  # "" for the module itself, "Class.method" for a method
    obj: Any
    public: bool


SKIPPED: Dict[str, str] = {}  # module -> the optional dependency it needs and this environment lacks


def package_modules(package: str = PACKAGE) -> List[types.ModuleType]:
    """Every module of the package; one that needs a missing optional dependency (an extra such as
    ``[dicom]``) is left out and named in ``SKIPPED``, any other import error fails."""
    root = importlib.import_module(package)
    names = [package] + [info.name for info in pkgutil.walk_packages(root.__path__, package + ".")]
    modules = []
    for name in sorted(names):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if not error.name or error.name.split(".")[0] == package.split(".")[0]:
                raise
            SKIPPED[name] = f"needs {error.name}"
    return modules


def docstring_owners(package: str = PACKAGE) -> List[Owner]:
    """The module, each function and class defined in it (public or not), and the classes' methods."""
    root = importlib.import_module(package)
    exported = {name for names in getattr(root, "_EXPORTS", {}).values() for name in names}
    owners: List[Owner] = []
    for module in package_modules(package):
        public = set(getattr(module, "__all__", ())) | (exported & set(vars(module)))
        owners.append(Owner(module.__name__, "", module, True))
        for name, obj in vars(module).items():
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != module.__name__ \
                    or obj.__qualname__ != name:  # an alias or an import: its docstring is read where defined
                continue
            owners.append(Owner(module.__name__, name, obj, name in public))
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    member = getattr(member, "__func__", member)
                    if isinstance(member, property) or (
                            inspect.isfunction(member) and member.__qualname__ == f"{name}.{attr}"):
                        owners.append(Owner(module.__name__, f"{name}.{attr}", member,
                                            name in public and not attr.startswith("_")))
    return owners


def _by_name(package: str = PACKAGE) -> Dict[str, List[Any]]:
    index: Dict[str, List[Any]] = {}
    for owner in docstring_owners(package):
        if owner.name and "." not in owner.name:
            index.setdefault(owner.name, []).append(owner.obj)
            index.setdefault(f"{owner.module.rsplit('.', 1)[-1]}.{owner.name}", []).append(owner.obj)
    return index


def week_notebooks(course: Path = COURSE) -> Dict[int, Path]:
    found: Dict[int, Path] = {}
    for path in sorted(course.glob("week*_*.ipynb")):
        match = re.fullmatch(r"week(\d+)_.*\.ipynb", path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def false_claims(package: str = PACKAGE, course: Path = COURSE) -> List[str]:
    """One line per claim that does not hold, per malformed claim and per week mentioned in prose."""
    notebooks = week_notebooks(course)
    references = {week: referenced_objects(code_of_notebook(nbformat.read(path, as_version=4)), package)
                  for week, path in notebooks.items()}
    index = _by_name(package)
    report: List[str] = []
    for owner in docstring_owners(package):
        claims, problems = parse_claims(owner.obj.__doc__)
        where = f"{owner.module}{'.' + owner.name if owner.name else ' (module)'}"
        if owner.name:  # prose may mention weeks in a module's overview; not in a function's docstring
            report.extend(f"{where}: {problem}" for problem in problems)
        else:
            report.extend(f"{where}: {problem}" for problem in problems if problem.startswith("claim"))
        for claim in claims:
            label = f"{where}: 'Taught in week {claim.week}'" if claim.kind == "taught" else \
                f"{where}: 'Used in week {claim.week} through `{claim.through}`'"
            if not owner.public:
                report.append(f"{label}, but the name is not public")
                continue
            if claim.week not in notebooks:
                report.append(f"{label}, but there is no course/week{claim.week}_*.ipynb")
                continue
            used = references[claim.week]
            if claim.kind == "taught":
                if owner.name:
                    ok = any(obj is owner.obj for obj in used)
                else:
                    ok = any(obj is owner.obj or (not isinstance(obj, types.ModuleType)
                                                  and getattr(obj, "__module__", None) == owner.module)
                             for obj in used)
                if not ok:
                    report.append(f"{label}, but that notebook's code never uses it")
                continue
            candidates = index.get(claim.through, [])
            if len(candidates) != 1:
                report.append(f"{label}, but `{claim.through}` names {len(candidates)} package objects")
                continue
            through = candidates[0]
            if not any(obj is through for obj in used):
                report.append(f"{label}, but that notebook's code never uses `{claim.through}`")
            elif not owner.name:
                continue  # a module served through a function: enough that the function is used
            elif not calls_through(through, owner.obj, package):
                report.append(f"{label}, but `{claim.through}` does not use it")
    return report


# ---------------------------------------------------------------------------------------------------
# The parser on planted examples
# ---------------------------------------------------------------------------------------------------

def test_parse_claims_reads_every_allowed_form():
    doc = """Dice score.

    Shape: (N, C, *spatial).

    Taught in week 4. Used in week 2 through `evaluate`.
    Used in weeks 5 and 6 through
    `metrics.evaluate`.
    """
    claims, problems = parse_claims(doc)
    assert problems == []
    assert claims == [Claim("taught", 4), Claim("used", 2, "evaluate"), Claim("used", 5, "metrics.evaluate"),
                      Claim("used", 6, "metrics.evaluate")]
    claims, problems = parse_claims("Taught in week 2 (volumes, slices) and week 5 (sites). Taught in weeks "
                                    "1, 3 and 6.")
    assert problems == []
    assert [c.week for c in claims] == [2, 5, 1, 3, 6]
    claims, problems = parse_claims("Used in week 1 (NIfTI) through `load_case` and `builtin`, and in weeks 3 "
                                    "and 4 through `fit`.")
    assert problems == []
    assert claims == [Claim("used", 1, "load_case"), Claim("used", 1, "builtin"), Claim("used", 3, "fit"),
                      Claim("used", 4, "fit")]


@pytest.mark.parametrize("doc, problem", [
    ("Taught in week 4 (used again in weeks 5 and 6).", "claim does not follow"),
    ("Taught in week four.", "claim does not follow"),
    ("Used in week 2 via evaluate.", "claim does not follow"),
    ("Used in week 2 through evaluate.", "claim does not follow"),
    ("Taught in week 3 and used again in week 4.", "claim does not follow"),
    ("Weights for a training set that under-represents dark skin (week 6).", "week mentioned outside"),
    ("One of the points of the week-3 comparison.", "week mentioned outside"),
    ("Taught in week 4. Handy in weeks 5 and 6 too.", "week mentioned outside"),
])
def test_parse_claims_reports_what_it_cannot_read(doc, problem):
    claims, problems = parse_claims(doc)
    assert len(problems) >= 1 and problems[0].startswith(problem), problems


def test_parse_claims_ignores_docstrings_without_weeks():
    assert parse_claims(None) == ([], [])
    assert parse_claims("Not taught in a particular week; see week1_registration.ipynb.") == ([], [])


def test_references_resolve_imports_aliases_and_rebinding():
    cells = [
        "%matplotlib inline\nimport medseg_edu as mu\nfrom medseg_edu import metrics\n"
        "from medseg_edu.losses import soft_dice_loss as sdl, focal_loss\nimport numpy as np",
        "mu.iou_score(a, b)\nmetrics.dice_score(a, b)\nsdl(x, y)",
        # imported, then replaced by the notebook's own function before any use: not a use of the package's
        "def focal_loss(x, y):\n    return 0\nfocal_loss(1, 2)",
        # an attribute of some other object of the same name is not the package's
        "np.volume_ml(3)\nclass Thing:\n    tversky_loss = 1\nThing.tversky_loss",
        "### BEGIN HIDDEN TESTS\nmu.hd95_distance(a, b)\n### END HIDDEN TESTS",
    ]
    import medseg_edu.losses as losses
    import medseg_edu.metrics as metrics

    used = referenced_objects(cells)
    for expected in (metrics.iou_score, metrics.dice_score, losses.soft_dice_loss):
        assert any(obj is expected for obj in used), expected.__name__
    for absent in (losses.focal_loss, metrics.volume_ml, losses.tversky_loss, metrics.hd95_distance):
        assert not any(obj is absent for obj in used), absent.__name__


def test_references_reject_a_cell_that_does_not_parse():
    with pytest.raises(ValueError, match="code cell 0 does not parse"):
        referenced_paths(["def broken(:\n    pass"])


@pytest.fixture()
def planted(tmp_path, monkeypatch):
    """A tiny package with true and false claims and a course with two weeks."""
    pkg = tmp_path / "plantedpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Planted package."""\n_EXPORTS = {"plantedpkg.core": ["used_a", "helper_b"]}\n')
    (pkg / "core.py").write_text(textwrap.dedent('''
        """Core. Taught in week 1."""
        __all__ = ["used_a", "helper_b", "serves_b", "never_used", "Thing", "prose"]

        def used_a():
            """Called by the notebook. Taught in week 1."""

        def helper_b():
            """Called only through serves_b. Used in week 1 through `serves_b`."""

        def serves_b():
            """Calls a private step that calls helper_b. Taught in week 1."""
            return _step()

        def _step():
            return helper_b()

        def never_used():
            """False claims. Taught in week 1. Used in week 1 through `used_a`. Taught in week 2."""

        class Thing:
            """A class the notebook builds. Taught in week 1."""

        def prose():
            """Good for dark skin (week 6)."""

        def _private():
            """Taught in week 1."""
    '''))
    (pkg / "optional.py").write_text('"""Needs an extra. Taught in week 1."""\nimport not_installed_h8x\n')
    course = tmp_path / "course"
    course.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("We call `never_used()` in prose only."),
                nbformat.v4.new_code_cell("from plantedpkg.core import used_a, serves_b\n"
                                          "import plantedpkg.core as core"),
                nbformat.v4.new_code_cell("used_a()\nserves_b()\ncore.Thing()")]
    nbformat.write(nb, course / "week1_planted.ipynb")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield course
    SKIPPED.pop("plantedpkg.optional", None)
    for name in [n for n in sys.modules if n == "plantedpkg" or n.startswith("plantedpkg.")]:
        del sys.modules[name]


def test_false_claims_on_a_planted_package(planted):
    report = false_claims("plantedpkg", planted)
    assert sorted(report) == sorted([
        "plantedpkg.core.never_used: 'Taught in week 1', but that notebook's code never uses it",
        "plantedpkg.core.never_used: 'Used in week 1 through `used_a`', but `used_a` does not use it",
        "plantedpkg.core.never_used: 'Taught in week 2', but there is no course/week2_*.ipynb",
        "plantedpkg.core.prose: week mentioned outside a claim: 'Good for dark skin (week 6).'",
        "plantedpkg.core._private: 'Taught in week 1', but the name is not public",
    ])
    assert SKIPPED.pop("plantedpkg.optional") == "needs not_installed_h8x"


def test_false_claims_catches_a_claim_made_false_by_the_notebook(planted):
    nb_path = planted / "week1_planted.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[2].source = "used_a()\ncore.Thing()"  # serves_b no longer called
    nbformat.write(nb, nb_path)
    report = false_claims("plantedpkg", planted)
    assert "plantedpkg.core.serves_b: 'Taught in week 1', but that notebook's code never uses it" in report
    assert ("plantedpkg.core.helper_b: 'Used in week 1 through `serves_b`', but that notebook's code never "
            "uses `serves_b`") in report


# ---------------------------------------------------------------------------------------------------
# The real package and course
# ---------------------------------------------------------------------------------------------------

def test_every_week_claim_in_the_package_is_true():
    report = false_claims()
    for name, why in SKIPPED.items():
        print(f"not checked: {name} ({why})")
    for line in report:
        print(line)
    assert report == [], f"{len(report)} false or unreadable week claims (listed above)"


def test_the_check_sees_every_notebook_and_most_claims():
    # Guards against passing vacuously (no notebooks found, modules not walked, a parser that reads nothing):
    # the package holds about 200 claims, so far fewer means the walk or the parser lost most of them.
    assert {1, 2, 3, 4, 5, 6} <= set(week_notebooks())
    owners = docstring_owners()
    assert {"medseg_edu.metrics", "medseg_edu.data.io", "medseg_edu.training"} <= {o.module for o in owners}
    claims = sum(len(parse_claims(owner.obj.__doc__)[0]) for owner in owners)
    assert claims >= 100, f"only {claims} week claims found in the package"
