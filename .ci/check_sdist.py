"""Check the release artifacts, as `tox -e sdist` runs it.

    python .ci/check_sdist.py WORK_DIR [PYTEST_ARGS...]

1. `python -m build` makes the sdist, then the wheel from the unpacked sdist
   (so a file the wheel needs but the sdist leaves out fails here);
2. `twine check --strict` checks both (metadata, the README as PyPI renders it);
3. the sdist must hold every tracked file of the package, the tests, docs and
   examples (from `git ls-files`; the REQUIRED list where there is no git),
   the changelog and licence, and its version must be the package's; the
   wheel must hold every tracked file of the package;
4. the wheel is installed with its `test` extra, and a smoke subset of the
   tests (SMOKE, or PYTEST_ARGS) runs from the unpacked sdist against it, in
   pytest-xdist workers as in tox's test envs (pytest run as a script with
   --import-mode=append, so the installed wheel is what the tests import).
   The whole suite already ran on the same package in every test env; here
   the point is that the unpacked sdist is a working source tree.

Exits non-zero on the first failure. Runs in the current environment (tox's
sdist env): it installs the wheel into it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "flask_sockets_channels"
# What the sdist must carry besides the package: enough to run the tests and
# build the docs from it.
REQUIRED = (
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "setup.cfg",
    "setup.py",
    "pyproject.toml",
    "tox.ini",
    f"{NAME}/__init__.py",
    f"{NAME}/py.typed",
    f"{NAME}/static/client.js",
    f"{NAME}/static/client.mjs",
    f"{NAME}/static/client.d.ts",
    "tests/conftest.py",
    "tests/test_docs.py",
    "docs/conf.py",
    "docs/index.md",
    "docs/quickstart.md",
    "examples/chat/app.py",
    "examples/chat/templates/index.html",
)
# What the sdist must carry of the tracked files: all of these folders.
SHIPPED = (f"{NAME}/", "tests/", "docs/", "examples/")
# The tests run from the unpacked sdist: the package's import, the
# extension and test client, the handshake on both servers, the docs'
# examples and the example apps, all from files the sdist carries.
SMOKE = (
    "tests/test_extension.py",
    "tests/test_testing.py",
    "tests/test_handshake.py",
    "tests/test_docs.py",
    "tests/test_examples.py",
)
# Never in the sdist: build output, caches, local environments.
FORBIDDEN = ("docs/_build/", "__pycache__/", ".tox/", "test-artifacts/", ".ci/venv/")


def run(*command: str | Path, cwd: Path = ROOT) -> None:
    print("+", " ".join(map(str, command)), flush=True)
    subprocess.run([str(part) for part in command], cwd=cwd, check=True)


def tracked() -> list[str] | None:
    """The tracked files that must ship, or None outside a git checkout."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", *SHIPPED], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return listing.stdout.splitlines()


def version() -> str:
    """The version as the package declares it (setup.cfg reads the same)."""
    namespace: dict[str, str] = {}
    for line in (ROOT / NAME / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            exec(line, namespace)
    return namespace["__version__"]


def main(work: Path, pytest_args: list[str]) -> None:
    dist = work / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    sdists = sorted(dist.glob("*.tar.gz"))
    wheels = sorted(dist.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"not one sdist and one wheel: {sdists + wheels}"
    run(sys.executable, "-m", "twine", "check", "--strict", sdists[0], wheels[0])

    expected = f"flask_sockets_channels-{version()}"
    assert sdists[0].name == f"{expected}.tar.gz", (sdists[0].name, expected)
    assert wheels[0].name.startswith(f"{expected}-py3-none-any"), wheels[0].name
    with tarfile.open(sdists[0]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        files = tracked()
        if files is None:
            print("sdist: not a git checkout; checking the REQUIRED files only", flush=True)
        missing = [path for path in (files or []) + list(REQUIRED) if path not in names]
        assert not missing, f"the sdist lacks {missing}"
        stray = sorted(name for name in names if any(part in name for part in FORBIDDEN))
        assert not stray, f"the sdist holds build output or caches: {stray[:10]}"
        source = work / "sdist"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir()
        if sys.version_info >= (3, 12):
            archive.extractall(source, filter="data")
        else:
            archive.extractall(source)  # our own archive, just built
    unpacked = source / expected
    print(f"sdist: {len(names)} files, unpacked in {unpacked}", flush=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        packed = set(wheel.namelist())
    package = [path for path in files or [] if path.startswith(f"{NAME}/")]
    unpacked_package = [path for path in package if path not in packed]
    assert not unpacked_package, f"the wheel lacks {unpacked_package}"
    print(f"wheel: {len(packed)} files, every tracked file of the package", flush=True)

    run(sys.executable, "-m", "pip", "install", f"{wheels[0]}[test]")
    # The same version may be installed from an earlier run: this wheel wins.
    run(sys.executable, "-m", "pip", "install", "--force-reinstall", "--no-deps", wheels[0])
    pytest = Path(sys.executable).parent / "pytest"
    workers = os.environ.get("FSC_TEST_WORKERS", "4")
    run(
        pytest, "--import-mode=append", "--timeout", "120", "-p", "no:cacheprovider",
        "-n", workers, "--dist", "worksteal",
        "--ignore-glob=tests/test_browser*.py", "--ignore=tests/test_docs_site.py",
        *(pytest_args or SMOKE),
        cwd=unpacked,
    )  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
