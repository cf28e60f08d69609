"""House rules for what grades students: no exact float comparison, every random generator seeded.

Scanned statically (``ast``, nothing is run): the code of every graded test cell of the course
notebooks (nbgrader ``grade: true`` and not a solution cell; visible and hidden parts), every self-check
cell (``grade_id`` ``check_*``), and ``medseg_edu/checks/*.py``.

Why: the last bits of a float result depend on the CPU (NumPy picks SIMD kernels at import, BLAS and
thread counts change summation order), so an exact comparison can fail a correct solution on one
machine and not another; and a test that draws unseeded random inputs can give a different mark each
time the same notebook is graded.

The rules, kept simple on purpose:

1. Exact array comparison -- ``array_equal``, ``array_equiv``, ``assert_array_equal``, ``assert_equal``,
   ``torch.equal`` -- only where one argument is visibly integer, boolean or a shape:

   a. ``x.shape``; ``x.astype(<int/bool dtype>)``, ``.long()``, ``.int()``, ``.bool()``; ``len``, ``int``,
      ``np.count_nonzero``, ``np.flatnonzero``, ``np.argwhere``, ``np.nonzero``; a comparison such as
      ``x > 0``; a literal list/tuple of ints -- seen through shape-keeping wrappers (``np.asarray``,
      ``np.sort``, ``np.rot90``, ``.numpy()``, ``.copy()``, indexing, ...);
   b. a name that says it holds integers, by the course's naming convention (DESIGN.md: labels and masks
      are integer arrays): the variable, attribute or string key contains ``label``, ``mask``,
      ``shape``, ``idx``, ``index``/``indices`` or the word ``ids``;
   c. or the call (or the line just above it) carries a comment ``# exact: <why>``, e.g. an input
      compared with its own copy to show that it was not modified.

2. ``==`` or ``!=`` with a float literal (``x == 1.0``) is never allowed: use ``np.isclose`` or
   ``abs(a - b) < tol`` with a comment saying why ``tol`` is big enough.

3. Every RNG is seeded:

   - ``np.random.default_rng()`` (and ``RandomState``, ``SeedSequence``, ``PCG64``, ..., ``random.Random``)
     with no seed or ``None``;
   - draws from NumPy's legacy global state (``np.random.rand``, ``np.random.choice``, ...): use a seeded
     ``Generator``;
   - ``random.random()``/``randint``/``choice``/... and ``torch.rand``/``randn``/``randint``/``randperm``/
     ``*_like``/``normal``/``bernoulli``/``multinomial`` without ``generator=``, unless the same cell (in
     a module: the same function) seeds first with ``random.seed(...)``, ``torch.manual_seed(...)`` or
     ``seed_everything(...)``;
   - ``.seed()`` with no argument (it picks a seed from the clock);
   - in ``medseg_edu/checks``: a parameter named ``seed`` whose default is not an int.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "course").glob("week*.ipynb"))
CHECK_MODULES = sorted((ROOT / "medseg_edu" / "checks").glob("*.py"))

_EXACT_ARRAY = {"array_equal", "array_equiv", "assert_array_equal", "assert_equal"}
_INT_NAME = re.compile(r"label|mask|shape|idx|index|indices|(?:^|_)ids(?:$|_)", re.IGNORECASE)
_INT_DTYPE = re.compile(r"int|bool", re.IGNORECASE)
_INT_CALLS = {"len", "int", "bool", "count_nonzero", "flatnonzero", "argwhere", "nonzero"}
_INT_METHODS = {"long", "int", "bool"}
_WRAPPERS = {"asarray", "array", "sort", "rot90", "flip", "ravel", "flatten", "squeeze", "copy", "numpy",
             "to_numpy", "cpu", "detach", "tolist", "transpose", "reshape", "moveaxis"}
_CONSTRUCTORS = {"default_rng", "RandomState", "SeedSequence", "PCG64", "PCG64DXSM", "MT19937", "Philox",
                 "SFC64", "Random"}
_NUMPY_NOT_DRAWS = _CONSTRUCTORS | {"Generator", "BitGenerator", "seed", "get_state", "set_state"}
_STDLIB_DRAWS = {"random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "gauss",
                 "normalvariate", "betavariate", "expovariate", "getrandbits", "triangular"}
_TORCH_DRAWS = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
                "bernoulli", "multinomial", "poisson"}
_SEEDERS = {"torch.manual_seed", "manual_seed", "seed_everything", "random.seed"}


def _dotted(node: ast.AST) -> str:
    """'np.random.default_rng' for an attribute chain on a name; '' for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(node.id)
    name = ".".join(reversed(parts))
    return "np." + name[len("numpy."):] if name.startswith("numpy.") else name


def _int_like(node: ast.AST) -> bool:
    """Rule 1a/1b: the expression visibly holds integers, booleans or a shape."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, bool))
    if isinstance(node, (ast.List, ast.Tuple)):
        return bool(node.elts) and all(_int_like(e) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):          # [0] * 4
        return _int_like(node.left) and _int_like(node.right)
    if isinstance(node, ast.Name):
        return bool(_INT_NAME.search(node.id))
    if isinstance(node, ast.Attribute):
        return node.attr == "shape" or bool(_INT_NAME.search(node.attr)) or _int_like(node.value)
    if isinstance(node, ast.Subscript):          # image[label > 0] is as float as image; table["label"] is not
        key = node.slice
        return _int_like(node.value) or (isinstance(key, ast.Constant) and isinstance(key.value, str)
                                         and bool(_INT_NAME.search(key.value)))
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in _INT_CALLS:
            return True
        if isinstance(func, ast.Attribute) and name in _INT_METHODS and not node.args:
            return True
        if isinstance(func, ast.Attribute) and name in {"astype", "to", "type"}:
            return any(_INT_DTYPE.search(ast.unparse(a)) for a in [*node.args, *(k.value for k in node.keywords)])
        if name in _WRAPPERS:
            module_function = not isinstance(func, ast.Attribute) or _dotted(func.value) in {"np", "torch"}
            inner = (node.args[0] if node.args else None) if module_function else func.value
            return inner is not None and _int_like(inner)
    return False


def _is_float_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and isinstance(node.value, float)


def _no_seed(call: ast.Call) -> bool:
    if not call.args and not call.keywords:
        return True
    first = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "seed"), None)
    return isinstance(first, ast.Constant) and first.value is None


def find_problems(source: str, *, where: str, module: bool = False) -> list[str]:
    """All breaches of the house rules (see the module docstring) in ``source``, as readable lines."""
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    tree = ast.parse(source)
    lines = source.splitlines()
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}

    def exact_comment(node: ast.AST) -> bool:
        span = lines[max(node.lineno - 2, 0):node.end_lineno]
        return any("# exact:" in line for line in span)

    def scope(node: ast.AST) -> ast.AST:
        while node in parents and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node = parents[node]
        return node

    def seeded_before(node: ast.Call) -> bool:
        return any(isinstance(n, ast.Call) and _dotted(n.func) in _SEEDERS | {"torch.manual_seed"}
                   and (n.args or n.keywords) and n.lineno <= node.lineno
                   for n in ast.walk(scope(node)))

    problems = []

    def report(node: ast.AST, what: str) -> None:
        problems.append(f"{where}, line {node.lineno}: {what}: {ast.unparse(node)[:100]}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            pairs = zip([node.left, *node.comparators[:-1]], node.ops, node.comparators)
            if any(isinstance(op, (ast.Eq, ast.NotEq)) and (_is_float_literal(a) or _is_float_literal(b))
                   for a, op, b in pairs):
                report(node, "== / != with a float literal (use a tolerance)")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and module:
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            defaults = dict(zip([a.arg for a in positional[len(positional) - len(args.defaults):]], args.defaults))
            defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
            seed = defaults.get("seed")
            if seed is not None and not (isinstance(seed, ast.Constant) and type(seed.value) is int):
                problems.append(f"{where}, line {node.lineno}: {node.name}(seed=...) must default to an int, "
                                f"got {ast.unparse(seed)}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        last = name.rsplit(".", 1)[-1] if name else (node.func.attr if isinstance(node.func, ast.Attribute) else "")
        if (last in _EXACT_ARRAY or name == "torch.equal") and not exact_comment(node) \
                and not any(_int_like(a) for a in node.args[:2]):
            report(node, "exact comparison of arrays that are not visibly integer (tolerance, or '# exact: why')")
        if last in _CONSTRUCTORS and (name.startswith(("np.random.", "random.")) or name in _CONSTRUCTORS) \
                and _no_seed(node):
            report(node, "random generator without a seed")
        elif name.startswith("np.random.") and last not in _NUMPY_NOT_DRAWS:
            report(node, "draw from NumPy's global random state (use a seeded np.random.default_rng(seed))")
        elif name.startswith("random.") and last in _STDLIB_DRAWS and not seeded_before(node):
            report(node, "draw from the unseeded random module")
        elif name.startswith("torch.") and last in _TORCH_DRAWS and \
                not any(k.arg == "generator" for k in node.keywords) and not seeded_before(node):
            report(node, "torch draw without generator= or an earlier torch.manual_seed in the same cell/function")
        if last == "seed" and isinstance(node.func, ast.Attribute) and not node.args and not node.keywords:
            report(node, ".seed() without a value picks a seed from the clock")
    return problems


def graded_cells(path: Path) -> list[tuple[str, str]]:
    """(grade_id, source) of the graded test cells and the self-check cells of one notebook."""
    cells = []
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id", "")
        if cell.cell_type == "code" and ((meta.get("grade") and not meta.get("solution"))
                                         or grade_id.startswith("check_")):
            cells.append((grade_id, cell.source))
    return cells


# ------------------------------------------------------------------ the checker catches planted mistakes
@pytest.mark.parametrize("bad, what", [
    ("assert np.array_equal(np.mean(rx[0][ry > 0]), np.mean(image[0]))", "exact comparison"),
    ("assert np.array_equal(image[label > 0], other[label > 0])", "exact comparison"),
    ("np.testing.assert_array_equal(out, expected)", "exact comparison"),
    ("assert torch.equal(net(x), other(x))", "exact comparison"),
    ("from numpy.testing import assert_array_equal\nassert_array_equal(a, b)", "exact comparison"),
    ("assert dice(a, a) == 1.0", "float literal"),
    ("assert 0.3 != total", "float literal"),
    ("assert x == -0.5", "float literal"),
    ("rng = np.random.default_rng()", "without a seed"),
    ("rng = numpy.random.default_rng(None)", "without a seed"),
    ("rng = np.random.default_rng(seed=None)", "without a seed"),
    ("state = np.random.RandomState()", "without a seed"),
    ("x = np.random.rand(3, 4)", "global random state"),
    ("idx = np.random.choice(10, 3)", "global random state"),
    ("import random\nk = random.randint(0, 9)", "unseeded random module"),
    ("x = torch.rand(2, 3)", "torch draw"),
    ("x = torch.randn_like(y)", "torch draw"),
    ("x = torch.rand(2)\ntorch.manual_seed(0)", "torch draw"),                  # seeded too late
    ("g = torch.Generator()\ng.seed()", "picks a seed from the clock"),
    ("def f():\n    torch.manual_seed(0)\ndef g():\n    return torch.rand(3)", "torch draw"),   # other function
])
def test_checker_flags_planted_mistakes(bad, what):
    problems = find_problems(bad, where="planted")
    assert len(problems) == 1 and what in problems[0], problems


def test_checker_flags_unseeded_default_in_a_module():
    problems = find_problems("def check_x(fn, *, seed=None):\n    pass", where="planted", module=True)
    assert len(problems) == 1 and "must default to an int" in problems[0]


@pytest.mark.parametrize("good", [
    "assert np.allclose(a, b, atol=1e-6)",
    "assert np.isclose(dice(a, a), 1.0, atol=1e-9)",
    "assert x.shape == (2, 3) and n == 0 and k != 1",
    "assert np.array_equal(got_label, ref_label)",
    "assert np.array_equal(pred.astype(np.uint8), target.astype(np.uint8))",
    "assert np.array_equal(a > 0, b > 0)",
    "assert np.array_equal(np.sort(np.asarray(train_idx)), np.sort(idx))",
    "assert torch.equal(out.argmax(1), labels)",
    "np.testing.assert_array_equal(regions, [0, 1, 1, 1])",
    "np.testing.assert_array_equal(np.rot90(masks[0]), rotated_mask)",
    "assert np.array_equal(x.shape, y.shape)",
    "assert np.array_equal(image, original)   # exact: the input is untouched (vs its own copy)",
    "# exact: integer-valued voxels, copied\nassert np.array_equal(image[w], patch)",
    "rng = np.random.default_rng(0)",
    "rng = np.random.default_rng(seed)",
    "x = rng.random((3, 3)); y = rng.integers(0, 4, size=5); z = rng.choice(3)",
    "x = torch.rand(2, 3, generator=torch.Generator().manual_seed(0))",
    "torch.manual_seed(3)\nx = torch.rand(2, 3)",
    "seed_everything(0)\nx = torch.randn(4)",
    "import random\nrandom.seed(1)\nk = random.randint(0, 9)",
    "g = torch.Generator().manual_seed(4)",
    "%matplotlib inline\nx = 1",
])
def test_checker_accepts_good_code(good):
    assert find_problems(good, where="good") == []


def test_checker_accepts_int_seed_default_in_a_module():
    assert find_problems("def check_x(fn, *, seed: int = 0, trials=3):\n    pass", where="m", module=True) == []


# ------------------------------------------------------------------ the course follows the rules
def test_there_is_something_to_scan():
    assert len(NOTEBOOKS) >= 6 and len(CHECK_MODULES) >= 7
    assert all(any(gid.startswith("test_") for gid, _ in graded_cells(p)) for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_test_and_check_cells_follow_the_rules(path):
    problems = [p for grade_id, source in graded_cells(path)
                for p in find_problems(source, where=f"{path.name} [{grade_id}]")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CHECK_MODULES, ids=[p.stem for p in CHECK_MODULES])
def test_self_check_modules_follow_the_rules(path):
    problems = find_problems(path.read_text(), where=str(path.relative_to(ROOT)), module=True)
    assert not problems, "\n".join(problems)
