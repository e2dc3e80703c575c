"""The digest of the code a component runs, for its cache key.

TFX hashes a component's parameters, not the Python its executor imports (the Trainer's
`run_fn` by module path), so without this a change to the code would serve a stale
artifact from the cache. The files hashed are what the component's modules import inside
this project, followed transitively (every `import`, including those inside functions):
a list kept by hand missed `components/trainer/fit.py` once. The Trainer carries the
digest in its custom_config, the other components as a parameter
(`components.runtime.cache_key`).
"""

from __future__ import annotations

import ast
import hashlib
import os
from typing import Iterable, List, Optional

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The package whose modules are followed; imports of other packages are libraries.
PACKAGE = "components"


def _module_file(module: str, root: str) -> Optional[str]:
    """The file of a `components.*` module under `root`, or None (not ours, or absent)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = os.path.join(root, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _imported_modules(path: str) -> Iterable[str]:
    """Every module `path` imports, anywhere in the file. `from a import b` yields `a` and
    `a.b` (b may be a submodule); names that are not modules resolve to no file."""
    with open(path, "rb") as f:
        tree = ast.parse(f.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_closure(modules: Iterable[str], root: str = _REPO_ROOT) -> List[str]:
    """The files of `modules` and of every project module they import, transitively
    (a package's `__init__.py` included), sorted."""
    pending = list(modules)
    files = set()
    while pending:
        module = pending.pop()
        parts = module.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py too.
        for end in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:end]), root)
            if path and path not in files:
                files.add(path)
                pending.extend(_imported_modules(path))
    return sorted(files)


def code_digest(modules: Iterable[str], root: str = _REPO_ROOT) -> str:
    """sha256 over the import closure of `modules` (paths relative to `root`, and contents)."""
    digest = hashlib.sha256()
    for path in import_closure(modules, root):
        digest.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]
