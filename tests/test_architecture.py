"""No import circles, type-only imports counted: the import-linter contracts skip `if TYPE_CHECKING:`
imports, so a circle made of them would pass `lint-imports`; these tests catch it."""

from __future__ import annotations

import graphlib

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("initsweep", exclude_type_checking_imports=False)


def test_no_two_modules_import_each_other(graph):
    mutual = sorted(
        f"{a} <-> {b}"
        for a in graph.modules
        for b in graph.find_modules_directly_imported_by(a)
        if a < b and a in graph.find_modules_directly_imported_by(b)
    )
    assert not mutual, f"modules that import each other: {'; '.join(mutual)}"


def test_no_cycle_among_the_modules_of_a_package(graph):
    """Per package, its modules and subpackages (each with everything under it) in import order."""
    cycles = []
    for package in sorted(graph.modules):
        children = graph.find_children(package)
        if not children:
            continue
        imports = {
            child: {
                other
                for module in {child, *graph.find_descendants(child)}
                for imported in graph.find_modules_directly_imported_by(module)
                for other in children
                if other != child and (imported == other or imported.startswith(f"{other}."))
            }
            for child in children
        }
        try:
            tuple(graphlib.TopologicalSorter(imports).static_order())
        except graphlib.CycleError as err:
            cycles.append(" -> ".join(err.args[1]))
    assert not cycles, f"import cycles: {'; '.join(cycles)}"
