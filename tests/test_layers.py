"""The package's layers point one way: no module imports a package of a higher layer, and the
packages' import graph has no cycle (imports inside functions count too)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "d2v_speech"

# lowest first; a unit is a subpackage or a top-level module. A unit may import units of its own
# layer (if that makes no cycle) or of lower layers, never of a higher one.
LAYERS = (
    ("atomic_files", "heap", "openmp"),  # helpers with no project imports
    ("data", "nn"),  # runtime waveform pipelines and batches; network modules
    ("corpora", "synthetic"),  # real-corpus preparation and readers; the embedded corpus generators
    ("augment", "ssl", "checkpoints"),  # augmentation, objectives, weight formats
    ("asr", "probe", "lm", "integrations"),  # CTC, decoding, probes, n-gram LMs; other toolkits
    ("benchmarking", "training"),  # Brains and recipe glue
)


def unit_of(module: str) -> str | None:
    """The unit of a dotted module name inside d2v_speech (None for the package itself)."""
    parts = module.split(".")
    if parts[0] != "d2v_speech" or len(parts) < 2:
        return None
    return parts[1]


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """unit -> units it imports (every import statement, at any depth of the module)."""
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).with_suffix("")
        if relative.parts == ("__init__",):
            continue  # the package root only re-exports lazily
        source = unit_of("d2v_speech." + ".".join(relative.parts))
        imported = graph.setdefault(source, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                target = unit_of(name)
                if target is not None and target != source:
                    imported.add(target)
    return graph


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    rank = {unit: level for level, units in enumerate(layers) for unit in units}
    found = [f"{unit} is in no layer" for unit in sorted(graph) if unit not in rank]
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target not in rank:
                found.append(f"{target} (imported by {source}) is in no layer")
            elif source in rank and rank[target] > rank[source]:
                found.append(f"{source} (layer {rank[source]}) imports {target} (layer "
                             f"{rank[target]})")  # fmt: skip
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle met by a depth-first walk (each reported once, from where it was closed)."""
    found, state = [], {}

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = "open"
        for target in sorted(graph.get(unit, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
    return found


def test_no_package_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_the_import_graph_between_packages_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_see_an_upward_import_a_cycle_and_a_lazy_import(tmp_path):
    package = tmp_path / "d2v_speech"
    (package / "nn").mkdir(parents=True)
    (package / "asr").mkdir()
    (package / "nn" / "model.py").write_text(
        "def build():\n    from d2v_speech.asr import decoding\n    return decoding\n"
    )
    (package / "asr" / "decoding.py").write_text("from d2v_speech.nn.model import build\n")
    graph = import_graph(package)
    assert graph == {"nn": {"asr"}, "asr": {"nn"}}
    assert upward_imports(graph) == ["nn (layer 1) imports asr (layer 4)"]
    assert cycles(graph) == [["asr", "nn", "asr"]]
