"""Static scan of student cells for tampering with the grader, and safe student feedback.

``scan_cells`` reads the student's answer cells (without running them) and lists every line that
changes something the tests rely on: an attribute of an imported module (``np.isclose = ...``,
``setattr(torch, ...)``, ``del math.pi``), ``sys.modules``, ``builtins``, ``globals()``, IPython's
hooks (anything through ``get_ipython()``, ``set_custom_exc``, ``showtraceback``), frame and trace
hooks, a module-level rebinding of a module, function or class an instructor cell defined (``np =
fake``, ``import fake as np``, ``def reference(...)``, also inside ``if``/``for``/``with``; plain
variables are not protected), and classes that
redefine ``__eq__``/``__bool__`` (an object equal to everything passes any ``==`` test). Ordinary code
(``model.weight = ...``, ``self.x = ...``, ``cfg.lr = 0.1``, ``plt.rcParams[...] = ...``) is not flagged.
A static scan can be fooled by a determined student; it is one layer, the README says what the others are.

``failure_feedback`` turns a failed test cell into one line a student may see: the error name and
message, the failing line only when it is in the visible part of the test, never hidden-test source;
``scrub`` removes instructor paths and environment values from any text.
"""
from __future__ import annotations

import ast
import re
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

__all__ = ["scan_cells", "failure_feedback", "scrub"]

# module names always treated as modules, even when the notebook imports them in a student cell
_ALWAYS_MODULES = {"np", "numpy", "torch", "math", "IPython", "sys", "builtins", "os", "random", "scipy",
                   "medseg_edu", "pd", "pandas", "importlib", "unittest"}
_BANNED_NAMES = {"get_ipython", "__builtins__", "set_custom_exc", "showtraceback", "showsyntaxerror",
                 "_getframe", "_current_frames", "settrace", "setprofile", "excepthook", "displayhook", "__import__",
                 "globals", "f_globals", "f_locals", "f_back", "ctypes", "gc"}
_BANNED_MODULES = {"builtins", "ctypes", "gc", "inspect", "importlib", "IPython", "signal"}
_EQUALITY_DUNDERS = {"__eq__", "__ne__", "__bool__", "__lt__", "__le__", "__gt__", "__ge__", "__float__",
                     "__array_ufunc__", "__array_function__"}


def _root_name(node: ast.AST) -> Optional[str]:
    """``a`` for ``a.b.c`` / ``a.b[0].c``; ``get_ipython`` for ``get_ipython().x``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _bound_names(tree: ast.AST) -> Set[str]:
    """Functions, classes and imports a cell binds at its top level (the names tests rely on; plain
    variables are left out: an exercise may well set ``threshold = 0.3`` again)."""
    names: Set[str] = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        names.update(_import_bindings(node))
    return names


def _module_names(trees: Iterable[ast.AST]) -> Set[str]:
    """Every name bound by an import statement (or ``x = __import__(...)``) anywhere in the cells."""
    names = set(_ALWAYS_MODULES)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Assign) and isinstance(node.value, (ast.Call, ast.Subscript)):
                if _root_name(node.value) in {"__import__", "importlib", "sys"}:
                    names.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _assign_targets(node: ast.AST) -> List[ast.AST]:
    if isinstance(node, (ast.Assign, ast.Delete)):
        targets = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.NamedExpr)):
        targets = [node.target]
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
    else:
        return []
    flat = []
    while targets:
        target = targets.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            targets.extend(target.elts)
        elif isinstance(target, ast.Starred):
            targets.append(target.value)
        else:
            flat.append(target)
    return flat


def _import_bindings(node: ast.AST) -> Dict[str, str]:
    """name -> what it is bound to, for one import statement (``import numpy as np``: np -> numpy)."""
    if isinstance(node, ast.Import):
        return {(a.asname or a.name).split(".")[0]: a.name if a.asname else a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name: f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names}
    return {}


def _local_nodes(tree: ast.AST) -> Set[int]:
    """ids of the nodes inside function, lambda and class bodies (their names are not module names)."""
    inside: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            parts = node.body if isinstance(node.body, list) else [node.body]
            inside.update(id(sub) for part in parts for sub in ast.walk(part))
    return inside


def _rebinding(node: ast.AST, protected: Set[str], imports: Dict[str, str]) -> Optional[str]:
    """A module-level def, class or import that replaces a name an instructor cell defined."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in protected:
        return f"redefines {node.name!r}, which an instructor cell defined"
    bound = _import_bindings(node).items()
    hit = sorted(name for name, what in bound if name in protected and imports.get(name) != what)
    return f"rebinds {', '.join(map(repr, hit))}, which an instructor cell defined" if hit else None


def _target_problem(target: ast.AST, modules: Set[str], protected: Set[str], top_level: bool) -> Optional[str]:
    if isinstance(target, ast.Name):
        if top_level and target.id in protected:
            return f"rebinds {target.id!r}, which an instructor cell defined"
        return None
    root = _root_name(target)
    if isinstance(target, ast.Attribute) and root in modules:
        return f"assigns to an attribute of the module {root!r}"
    if isinstance(target, ast.Subscript):
        text = ast.unparse(target.value)
        if root in {"sys", "builtins", "globals", "vars", "locals"} or text.endswith(("modules", "__dict__")):
            return f"assigns into {text}"
    if root == "get_ipython":
        return "changes the IPython shell"
    return None


def _scan_tree(tree: ast.AST, modules: Set[str], protected: Set[str],
               imports: Dict[str, str]) -> List[Tuple[int, str]]:
    found: List[Tuple[int, str]] = []
    local = _local_nodes(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        for target in _assign_targets(node):
            problem = _target_problem(target, modules, protected, id(node) not in local)
            if problem:
                found.append((line, problem))
        problem = None if id(node) in local else _rebinding(node, protected, imports)
        if problem:
            found.append((line, problem))
        if isinstance(node, ast.Global):
            hit = sorted(set(node.names) & protected)
            if hit:
                found.append((line, f"declares instructor name(s) {hit} global"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"setattr", "delattr"}:
            first = node.args[0] if node.args else None
            if first is not None and (isinstance(first, ast.Call) or _root_name(first) in modules):
                found.append((line, f"calls {node.func.id} on {ast.unparse(first)}"))
        if isinstance(node, ast.Name) and node.id in _BANNED_NAMES:
            found.append((line, f"uses {node.id}"))
        if isinstance(node, ast.Attribute) and node.attr in _BANNED_NAMES:
            found.append((line, f"uses .{node.attr}"))
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            hit = sorted({n.split(".")[0] for n in names} & _BANNED_MODULES)
            if hit:
                found.append((line, f"imports {', '.join(hit)}"))
        if isinstance(node, ast.FunctionDef) and node.name in _EQUALITY_DUNDERS:
            found.append((line, f"defines {node.name} (an object equal to anything passes any == test)"))
    return sorted(set(found))


def scan_cells(answers: Dict[str, str], context: Sequence[str] = ()) -> List[str]:
    """Tampering findings in the student's answer cells (empty list: nothing suspicious).

    Args:
        answers: grade_id -> source of each student answer cell.
        context: sources of the instructor's code cells (their imports count as modules, and the
            modules, functions and classes they define may not be rebound at module level).

    Returns:
        One line per finding, "<grade_id> line <n>: <what>"; an answer that does not parse is not a
        finding (it simply fails its tests).
    """
    context_trees = [_parse(code) for code in context]
    context_trees = [tree for tree in context_trees if tree is not None]
    answer_trees = {grade_id: _parse(code) for grade_id, code in answers.items()}
    modules = _module_names(context_trees + [t for t in answer_trees.values() if t is not None])
    protected = set().union(*(_bound_names(t) for t in context_trees)) if context_trees else set()
    imports = {name: what for t in context_trees for node in ast.walk(t)
               for name, what in _import_bindings(node).items()}
    findings = []
    for grade_id, tree in answer_trees.items():
        if tree is not None:
            findings.extend(f"{grade_id} line {line}: {what}"
                            for line, what in _scan_tree(tree, modules, protected, imports))
    return findings


def _parse(code: str) -> Optional[ast.AST]:
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return None


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (instructor paths, environment values) replaced by ``<hidden>``."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "<hidden>")
    return text


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")


def _hidden_lines(source: str) -> Set[int]:
    """1-based numbers of the lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS``."""
    hidden, inside = set(), False
    for number, line in enumerate(source.splitlines(), start=1):
        if "BEGIN HIDDEN TESTS" in line:
            inside = True
        if inside:
            hidden.add(number)
        if "END HIDDEN TESTS" in line:
            inside = False
    return hidden


def failure_feedback(source: str, ename: str, evalue: str, traceback: Sequence[str]) -> str:
    """One line for the student about a failed test cell whose instructor source is ``source``.

    The error name and the first line of its message; the failing line of the test (found in the
    traceback's first frame, quoted from ``source``) only when it is outside the hidden tests; for a
    failure inside the hidden tests, "a hidden test failed". Not shortened: scrub it first, then cut.
    """
    message = (evalue.strip().splitlines() or [""])[0]
    number = None
    for frame in traceback:
        match = _CELL_LINE.search(_ANSI.sub("", frame))
        if match:
            number = int(match.group(1))
            break
    lines = source.splitlines()
    error = f"{ename}: {message}" if message else ename
    if number is not None and number in _hidden_lines(source):
        text = f"a hidden test failed: {error}"
    elif number is not None and 1 <= number <= len(lines) and ename == "AssertionError" and not message:
        text = f"{ename}: failed at: {lines[number - 1].strip()}"
    elif number is not None and 1 <= number <= len(lines):
        text = f"{error} (at: {lines[number - 1].strip()})"
    else:
        text = error
    return text
