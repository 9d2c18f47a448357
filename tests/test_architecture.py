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
    "cryptography", "nacl", "pybase64", "jsonschema", "jsonschema_rs", "jiter", "rfc8785",
    "http_message_signatures", "http_sf", "tzdata", "referencing",
    "schemas",  # the repository's own JSON Schema documents (data), loaded by federation/protocol/schemas.py
})

# Who may not import whom: (importer prefix, forbidden prefixes, why).
LAYERS = [
    ("federation.protocol", ("federation.server", "federation.hub", "federation.cli", "federation.audit", "node"),
     "the protocol core is pure: bytes and a clock in, values or typed errors out"),
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
    """An import inside a function is how a cycle hides; project modules are imported at the module top."""
    bad = [i for i in _all_imports() if i.in_function and _project(i.target)]
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


def _app_key_definitions() -> Iterator[tuple[str, int]]:
    for rel in _modules().values():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"), rel)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "AppKey"):
                yield rel, node.lineno


def test_app_keys_live_in_appkeys_modules() -> None:
    """The hub's and the node's shared state is declared, typed, in one module each (federation/server/ may
    declare the keys its own middleware reads); route modules import them at the top."""
    allowed = ("federation/hub/appkeys.py", "node/appkeys.py")
    bad = [(rel, line) for rel, line in _app_key_definitions()
           if rel not in allowed and not rel.startswith("federation/server/")]
    assert not bad, "AppKeys declared outside appkeys.py:\n" + "\n".join(f"  {r}:{n}" for r, n in bad)
