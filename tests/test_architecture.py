"""The rules of the house (docs/ARCHITECTURE.md), read from the code's own imports and definitions.

Each test fails with the offending file and line, so a change that breaks a rule says where. The graph is built
from every import statement (module top and function bodies alike) of federation/ and node/, migrations left out.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import pytest

from tests.support.paths import ROOT

PACKAGES = ("federation", "node")

# What the pure protocol core may import besides the standard library and itself: its own pure dependencies.
PROTOCOL_THIRD_PARTY = frozenset({
    "cryptography", "nacl", "pybase64", "jsonschema", "jsonschema_rs", "jiter", "orjson", "rfc8785",
    "http_message_signatures", "http_sf", "tzdata", "referencing",
    "schemas",  # the repository's own JSON Schema documents (data), loaded by federation/protocol/schemas.py
})

# Who may not import whom: (importer prefix, forbidden prefixes, why).
LAYERS = [
    ("federation.protocol", ("federation.server", "federation.hub", "federation.cli", "federation.audit", "node"),
     "the protocol core is pure: bytes and a clock in, values or typed errors out"),
    ("federation.conformance", ("federation.server", "federation.hub", "federation.cli", "federation.audit", "node"),
     "the conformance suite is made and judged from the protocol alone"),
    ("federation.audit", ("federation.server", "federation.hub", "federation.cli", "node"),
     "the outside auditor needs only the protocol and an injected fetch"),
    ("federation.server", ("federation.hub", "federation.cli", "node"),
     "shared plumbing serves the hub and the node and knows neither"),
    ("federation.hub", ("node", "federation.cli"), "the hub and the node never import each other"),
    ("node", ("federation.hub", "federation.cli"), "the hub and the node never import each other"),
]


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # the module imported (a package's submodule when the name is one)
    path: str  # file, relative to the repository
    line: int
    in_function: bool


def _module_name(rel: str) -> str:
    name = rel.removesuffix(".py").replace("/", ".")
    return name.removesuffix(".__init__")


@cache
def _modules() -> dict[str, str]:
    """Every project module's dotted name -> its path relative to the repository."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" not in rel:
                found[_module_name(rel)] = rel
    return found


def _resolve(module: str, name: str | None) -> str:
    """``from module import name``: the submodule when ``name`` is one, else the module."""
    if name is not None and f"{module}.{name}" in _modules():
        return f"{module}.{name}"
    return module


def _imports_of(rel: str) -> Iterator[Import]:
    tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
    importer = _module_name(rel)
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    inner = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, rel, node.lineno, id(node) in inner)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                yield Import(importer, _resolve(node.module, alias.name), rel, node.lineno, id(node) in inner)


@cache
def _all_imports() -> tuple[Import, ...]:
    return tuple(i for rel in _modules().values() for i in _imports_of(rel))


def _project(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _where(imports: list[Import]) -> str:
    return "\n".join(f"  {i.path}:{i.line} imports {i.target}" for i in imports)


def test_protocol_core_imports_only_the_standard_library_and_its_pure_dependencies() -> None:
    """federation/protocol/ is what a second implementation must match: no web, database, template or metrics
    library, nothing of the services."""
    stdlib = sys.stdlib_module_names
    bad = [i for i in _all_imports() if _under(i.importer, "federation.protocol")
           and not _under(i.target, "federation.protocol")
           and i.target.split(".")[0] not in stdlib | PROTOCOL_THIRD_PARTY | {"__future__"}]
    assert not bad, "federation/protocol/ imports outside its pure dependencies:\n" + _where(bad)


@pytest.mark.parametrize(("importer", "forbidden", "why"), LAYERS, ids=[rule[0] for rule in LAYERS])
def test_layers_point_one_way(importer: str, forbidden: tuple[str, ...], why: str) -> None:
    bad = [i for i in _all_imports() if _under(i.importer, importer)
           and any(_under(i.target, f) for f in forbidden)]
    assert not bad, f"{why}:\n" + _where(bad)


def test_no_project_import_inside_a_function() -> None:
    """An import inside a function is how a cycle hides; project modules are imported at the module top. Except in
    the command line (federation/cli), the top of the house that nothing imports (checked here): its commands import
    the layers they alone need when they run, so that `ipdn keygen` does not start the node's web app."""
    imports = _all_imports()
    assert not [i for i in imports if _under(i.target, "federation.cli") and not _under(i.importer, "federation.cli")
                and i.importer != "federation.__main__"], "the command line is imported by nothing but itself"
    bad = [i for i in imports if i.in_function and _project(i.target) and not _under(i.importer, "federation.cli")]
    assert not bad, "imports of project modules inside functions:\n" + _where(bad)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {m: set() for m in _modules()}
    for i in _all_imports():
        if i.target in edges and i.target != i.importer:
            edges[i.importer].add(i.target)
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join("  " + " <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module and a three-module cycle are found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def _app_key_definitions() -> Iterator[tuple[str, str, int]]:
    """(module, key name, line) of every ``NAME = web.AppKey(...)`` in federation/ and node/."""
    for module, rel in _modules().items():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "AppKey"):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        yield module, target.id, node.lineno


def _names_imported_from(module: str) -> Iterator[tuple[str, str, int, str]]:
    """(importer path, line, name) for every ``from module import name``."""
    for rel in _modules().values():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                for alias in node.names:
                    yield rel, alias.name, node.lineno, module


def test_shared_app_keys_live_in_appkeys_modules() -> None:
    """State that several modules read is declared once, typed, in ``federation/hub/appkeys.py`` or
    ``node/appkeys.py`` (``federation/server/`` declares the keys its own middleware reads); a key may sit beside
    its only user, but no other module imports it from there."""
    shared_homes = {"federation.hub.appkeys", "node.appkeys"}
    bad = []
    for module, name, line in _app_key_definitions():
        if module in shared_homes or module.startswith("federation.server"):
            continue
        users = [(rel, n) for rel, imported, n, _ in _names_imported_from(module) if imported == name]
        bad += [f"  {rel}:{n} imports {name} from {module} (declared at line {line})" for rel, n in users]
    assert not bad, "AppKeys shared outside appkeys.py:\n" + "\n".join(bad)


def test_appkeys_modules_declare_the_services() -> None:
    """The services the routes reach are typed keys of appkeys.py, never looked up through ``Any``."""
    declared = {(module, name) for module, name, _ in _app_key_definitions()}
    for module in ("federation.hub.appkeys", "node.appkeys"):
        assert {(module, "CONFIG"), (module, "SERVICE")} <= declared


def _wall_clock_reads(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
            if (name, node.func.attr) in {("datetime", "now"), ("datetime", "utcnow"), ("time", "time"),
                                          ("date", "today")}:
                yield node


def _clock_defaults(tree: ast.AST) -> set[int]:
    """Wall-clock reads that ARE the default clock: the whole body of a one-line function (``def utcnow():
    return datetime.now(UTC)``) or the default of a ``clock`` parameter (``clock=lambda: datetime.now(UTC)``)."""
    allowed = set()
    for node in ast.walk(tree):
        body = node.body if isinstance(node, ast.FunctionDef) else []
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call):
            allowed |= {id(c) for c in _wall_clock_reads(body[0].value) if c is body[0].value}
        if isinstance(node, ast.arguments):
            params = [*node.posonlyargs, *node.args][-len(node.defaults):] if node.defaults else []
            pairs = [*zip(params, node.defaults, strict=True), *zip(node.kwonlyargs, node.kw_defaults, strict=True)]
            allowed |= {id(c) for p, d in pairs if d is not None and "clock" in p.arg for c in _wall_clock_reads(d)}
    return allowed


def test_time_is_injected() -> None:
    """Services decide with an injected clock, so tests move time instead of sleeping: outside the command line
    (where "now" is the user's moment) the wall clock is read only as a clock's default."""
    bad = []
    for module, rel in _modules().items():
        if _under(module, "federation.cli"):
            continue
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
        allowed = _clock_defaults(tree)
        bad += [f"  {rel}:{c.lineno}" for c in _wall_clock_reads(tree) if id(c) not in allowed]
    assert not bad, "wall-clock reads outside an injected clock's default:\n" + "\n".join(bad)


def test_clock_rule_sees_a_wall_clock_read() -> None:
    """The check above can fail: a decision on datetime.now() is seen, a clock's default is not."""
    tree = ast.parse("def f(clock=lambda: datetime.now(UTC)):\n    return clock() < datetime.now(UTC)\n"
                     "def utcnow():\n    return datetime.now(UTC)\n")
    reads = list(_wall_clock_reads(tree))
    assert len(reads) == 3
    assert [c.lineno for c in reads if id(c) not in _clock_defaults(tree)] == [2]


SIGN_IN_INTERNALS = {"SignInThrottle", "verify_password", "password_matches", "set_cookie", "clear_cookie"}
SIGNED_IN_PAGES = ("federation/hub/dashboard/pages.py", "node/status/page.py", "node/staff/web.py")


def test_one_sign_in_flow() -> None:
    """The dashboard, the status page and the authoring pages sign people in through federation/server/ui/signin.py:
    nothing else checks passwords, throttles sign-in or sets a session cookie, so there is one CSRF defence, one
    cookie policy and one brute-force limit to get right."""
    bad = []
    for module, rel in _modules().items():
        if _under(module, "federation.server.ui"):
            continue
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
        bad += [f"  {rel}:{n.lineno} uses {n.id}" for n in ast.walk(tree)
                if isinstance(n, ast.Name) and n.id in SIGN_IN_INTERNALS]
        bad += [f"  {rel}:{n.lineno} uses {n.attr}" for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and n.attr in SIGN_IN_INTERNALS]
    assert not bad, "sign-in internals used outside federation/server/ui/:\n" + "\n".join(bad)
    for rel in SIGNED_IN_PAGES:
        names = {n.id for n in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))) if isinstance(n, ast.Name)}
        assert "SignIn" in names, f"{rel} does not sign people in through SignIn"


def test_no_test_module_imports_another() -> None:
    """Shared test code lives in tests/support/ (or a conftest.py for fixtures): a test module imported by another
    would run its tests twice and tie unrelated files together."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            bad += [f"  {rel}:{node.lineno} imports {n}" for n in names
                    if n.startswith("tests.") and n.rsplit(".", 1)[-1].startswith(("test_", "conftest"))]
    assert not bad, "test modules importing test modules:\n" + "\n".join(bad)


def test_docs_name_every_part() -> None:
    """docs/ARCHITECTURE.md and the README's table name every package of federation/ and node/, and every module
    at the top of the hub and the node: the map matches the tree."""
    docs = {name: (ROOT / name).read_text(encoding="utf-8") for name in ("docs/ARCHITECTURE.md", "README.md")}
    parts = {p.parent.relative_to(ROOT).as_posix() + "/" for package in PACKAGES
             for p in (ROOT / package).rglob("__init__.py") if "/migrations/" not in p.as_posix()}
    parts |= {p.relative_to(ROOT).as_posix() for d in ("federation", "federation/hub", "node")
              for p in (ROOT / d).glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    for name, text in docs.items():
        missing = sorted(part for part in parts if part.rstrip("/").rsplit("/", 1)[-1] not in text)
        assert not missing, f"{name} does not name: {', '.join(missing)}"
