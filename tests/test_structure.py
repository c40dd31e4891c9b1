"""The house's floors, checked from the source: which module may import which, no import cycles, and the
Hub-shipped files importing only torch, transformers, the standard library and each other."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lowest floor first; a module may import its own floor and the floors below, never one above.
FLOORS = {
    "hub": ["configuration_sog", "inputs_sog", "modeling_sog", "modeling_br", "modeling_ar", "pipeline_sog",
            "handler"],
    "builders": ["data_builders", "data_builders.common", "data_builders.debtags", "data_builders.instagram",
                 "data_builders.stackoverflow"],
    "library": ["training_instances", "corpora", "evaluation", "calibration", "score_tables", "classical_baselines",
                "lexical",
                "recipe", "hub_folder", "space_app"],
    "entry points": ["train", "demo", "sog_cli", "data_builders.__main__", "benchmarks.common", "benchmarks.cost",
                     "benchmarks.equal_cost", "benchmarks.paper_table", "benchmarks.sog_ablation",
                     "benchmarks.metric_speed", "benchmarks.recipe_ablation", "benchmarks.scale",
                     "benchmarks.expert_weights", "benchmarks.held_out_weights", "benchmarks.expert_features",
                     "benchmarks.paired_runs", "benchmarks.trained_runs", "benchmarks.first_step_ranking",
                     "docs.space_screenshot"],
}
FLOOR_OF = {module: index for index, modules in enumerate(FLOORS.values()) for module in modules}
HUB_THIRD_PARTY = {"torch", "transformers"}
SPACE_THIRD_PARTY = {"gradio", "transformers", "huggingface_hub"}


def source_of(module: str) -> Path:
    path = REPO / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """Every module named in an import statement anywhere in the file (functions included), relative imports
    resolved: ``from .common import x`` in a package is ``package.common``."""
    tree = ast.parse(source_of(module).read_text(encoding="utf-8"))
    package = module if source_of(module).name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: the Hub files' "from .x import" twin of "from x import", or a package's own
                base = package if package else ""
                name = f"{base}.{node.module}" if base and node.module else (node.module or base)
                found.add(name if package else node.module)
            else:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names
                             if f"{node.module}.{alias.name}" in FLOOR_OF)
    return found


def project_imports(module: str) -> set[str]:
    return {name for name in imports_of(module) if name in FLOOR_OF and name != module}


def test_every_project_module_has_a_floor():
    listed = set(FLOOR_OF)
    on_disk = {p.stem for p in REPO.glob("*.py") if p.stem not in ("setup",)}
    on_disk |= {f"{p.parent.name}.{p.stem}" if p.stem != "__init__" else p.parent.name
                for folder in ("data_builders", "benchmarks", "docs") for p in (REPO / folder).glob("*.py")
                if not (folder == "benchmarks" and p.stem == "__init__")}
    assert on_disk <= listed, f"modules without a floor: {sorted(on_disk - listed)}"


@pytest.mark.parametrize("module", sorted(FLOOR_OF))
def test_no_module_imports_a_higher_floor(module):
    higher = {name for name in project_imports(module) if FLOOR_OF[name] > FLOOR_OF[module]}
    assert not higher, f"{module} (floor {FLOOR_OF[module]}) imports {sorted(higher)} from a floor above"


def test_there_is_no_import_cycle():
    graph = {module: project_imports(module) for module in FLOOR_OF}
    state = {}

    def visit(module, path):
        if state.get(module) == "open":
            raise AssertionError("import cycle: " + " -> ".join(path + [module]))
        if state.get(module) == "done":
            return
        state[module] = "open"
        for name in sorted(graph[module]):
            visit(name, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


@pytest.mark.parametrize("module,allowed", [(m, HUB_THIRD_PARTY) for m in FLOORS["hub"]]
                         + [("space_app", SPACE_THIRD_PARTY)])
def test_shipped_files_import_only_what_their_users_have(module, allowed):
    """The Hub files travel alone (transformers copies them next to the weights); the Space app runs with its
    requirements.txt. Neither may import this project's other modules."""
    siblings = set(FLOORS["hub"]) if module in FLOORS["hub"] else set()
    for name in imports_of(module):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in allowed or name in siblings, f"{module} imports {name}"
