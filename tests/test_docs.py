"""Every code block of README.md and docs/*.md runs as written.

The convention, for whoever writes docs (docs/contributing.md says the same,
with examples):

* A fenced ``python`` block runs as it is, as a module of its own (so its
  ``if __name__ == "__main__":`` part does not run), in a fresh Python
  process whose working directory is a new project folder for the page: it
  holds the page's ``file`` blocks and a link to the repository's
  ``examples/``, nothing else. It must import what it uses.
* An HTML comment right above a block (blank lines allowed, nothing else)
  marks it; the page shows no trace of it:

  - ``<!-- doc-test: skip REASON -->``: not run, and REASON says why. Every
    block that is not Python (a shell command, JavaScript, nginx, a diagram)
    needs one.
  - ``<!-- doc-test: file NAME -->``: the block is the file NAME of the
    page's project (``app.py``, ``test_app.py``), written before any block
    of the page runs, so that later blocks can import it. A ``test_*.py``
    file is run with pytest and must pass.
  - ``<!-- doc-test: setup`` + lines of code + ``-->``: code run before the
    block, in the same module: the imports and names that a fragment takes
    from the text around it.
  - ``<!-- doc-test: check`` + lines of code + ``-->``: code run after the
    block, in the same module, that asserts what the block does (after a
    ``file`` block: run as a module of its own that imports the file).
    ``doc_helpers`` (written into the project) serves an app on a real
    server on port 0 and bounds waits.

A marker that does not fit (an unknown keyword, a skip without a reason, a
marker with no block under it, a non-Python block without a marker) fails
``test_docs_follow_the_convention``, naming the line.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.client import connect
from tests.conftest import ROOT, free_port, wait_time

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "python3"}
MARKER = "doc-test:"
KEYWORDS = {"skip", "file", "setup", "check"}
# A Python process per block: importing Flask and the package takes about
# 0.3 s; a block that starts a server or runs pytest takes a few seconds.
BLOCK_TIMEOUT = wait_time(90)

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
HELPERS = '''\
"""Helpers for the checks of tests/test_docs.py (written into each project)."""

import contextlib
import os
import select
import subprocess
import threading
import time

from werkzeug.serving import make_server

#: Seconds a check waits for anything (scaled like the test suite's waits).
TIMEOUT = 5 * float(os.environ.get("FSC_TIMEOUT_SCALE", "1"))


@contextlib.contextmanager
def serve(app):
    """``app`` on a threaded werkzeug server on 127.0.0.1, a free port;
    yields its base URL ("http://127.0.0.1:PORT"); stopped on exit."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="doc-test server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the server did not stop"


def talk(command, line, until, timeout=TIMEOUT):
    """Start ``command``, type ``line`` into it, read its output until
    ``until`` shows (AssertionError after ``timeout``), then close its input
    and wait for it to exit. Returns the output; the process never outlives
    the call."""
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = b""
    try:
        process.stdin.write(line.encode() + b"\\n")
        process.stdin.flush()
        deadline = time.monotonic() + timeout
        while until.encode() not in output:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([process.stdout], [], [], max(left, 0))
            chunk = os.read(process.stdout.fileno(), 4096) if readable else b""
            if not chunk:
                raise AssertionError(f"{until!r} not in the output of {command}: {output!r}")
            output += chunk
        process.stdin.close()
        process.wait(timeout)
        output += process.stdout.read()
        return output.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()


def wait_until(predicate, timeout=TIMEOUT):
    """Poll ``predicate`` until it is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(0.01)
'''


class ConventionError(Exception):
    """A document breaks the code-block convention."""


@dataclass
class Block:
    document: Path
    name: str  # the document's path as shown: relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: str | None = None
    file: str | None = None
    setup: str = ""
    check: str = ""
    markers: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.name}:{self.line}"

    @property
    def python(self) -> bool:
        return self.language in PYTHON

    @property
    def runs(self) -> bool:
        """Whether it gets a test of its own (else it is only compiled)."""
        if self.skip is not None or not self.python:
            return False
        if self.file is None:
            return True
        return bool(self.check) or is_test_file(self.file)


def is_test_file(name: str) -> bool:
    return Path(name).name.startswith("test_") and name.endswith(".py")


def parse_marker(text: str, where: str) -> tuple[str, str]:
    """``doc-test: KEYWORD REST`` -> (keyword, rest), rest dedented."""
    body = text[len(MARKER) :]
    first, _, more = body.partition("\n")
    keyword, _, argument = first.strip().partition(" ")
    if keyword not in KEYWORDS:
        raise ConventionError(f"{where}: unknown marker {keyword!r} (one of {sorted(KEYWORDS)})")
    if keyword in ("skip", "file"):
        argument = " ".join((argument + " " + more).split())
        if not argument:
            what = "a reason" if keyword == "skip" else "a file name"
            raise ConventionError(f"{where}: `doc-test: {keyword}` needs {what}")
        return keyword, argument
    if argument.strip():
        raise ConventionError(f"{where}: the code of `doc-test: {keyword}` starts on the next line")
    code = textwrap.dedent(more).strip("\n")
    if not code:
        raise ConventionError(f"{where}: `doc-test: {keyword}` holds no code")
    return keyword, code + "\n"


def parse(document: Path, root: Path = ROOT) -> list[Block]:
    """The fenced code blocks of ``document``, with their markers.

    Raises:
        ConventionError: naming every line of ``document`` that breaks the
            convention.
    """
    lines = document.read_text(encoding="utf-8").splitlines()
    name = str(document.relative_to(root))
    blocks: list[Block] = []
    errors: list[str] = []
    pending: list[tuple[str, str, int]] = []  # (keyword, argument, line)

    def marker_error(message: str) -> None:
        errors.append(f"{name}:{pending[0][2]}: {message}")
        pending.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if stripped.startswith("<!--"):
            start = index
            text = stripped[4:]
            while "-->" not in text and index + 1 < len(lines):
                index += 1
                text += "\n" + lines[index]
            index += 1
            if "-->" not in text:
                errors.append(f"{name}:{start + 1}: unclosed HTML comment")
                break
            text, _, after = text.partition("-->")
            if not text.strip().startswith(MARKER):
                if pending:
                    marker_error("a comment between a doc-test marker and its block")
                continue
            try:
                if after.strip():
                    raise ConventionError(f"{name}:{index}: text after a doc-test marker")
                keyword, argument = parse_marker(text.strip(), f"{name}:{start + 1}")
                if any(keyword == seen for seen, _, _ in pending):
                    raise ConventionError(f"{name}:{start + 1}: two `{keyword}` markers")
            except ConventionError as error:
                errors.append(str(error))
                continue
            pending.append((keyword, argument, start + 1))
            continue
        fence = FENCE.match(line)
        if fence is None:
            if stripped and pending:
                marker_error("a doc-test marker must be followed by a code block")
            index += 1
            continue
        opening, indent = fence["fence"], len(fence["indent"])
        info = fence["info"].strip()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(opening) and set(closing) == {opening[0]}:
                break
            text = lines[index]
            body.append(text[indent:] if text[:indent].strip() == "" else text.lstrip())
            index += 1
        else:
            errors.append(f"{name}:{start + 1}: unclosed code fence")
            break
        index += 1
        words = info.split()
        language = words[0].lower() if words else ""
        if language.startswith("{"):
            # A MyST directive: a code block only as {code-block} LANG.
            if language not in ("{code-block}", "{code}", "{sourcecode}"):
                if pending:
                    marker_error(f"a doc-test marker above a {language} directive")
                continue
            language = words[1].lower() if len(words) > 1 else ""
            body = [text for text in body if not text.startswith(":")]
        block = Block(document, name, start + 1, language, "\n".join(body) + "\n")
        for keyword, argument, _ in pending:
            setattr(block, keyword, argument)
            block.markers.append(keyword)
        pending.clear()
        try:
            check_block(block)
        except ConventionError as error:
            errors.append(str(error))
            continue
        blocks.append(block)
    if pending:
        marker_error("a doc-test marker with no block under it")
    if errors:
        raise ConventionError("\n".join(errors))
    return blocks


def check_block(block: Block) -> None:
    """The marker rules that do not depend on the neighbours."""
    if block.skip is not None:
        if set(block.markers) != {"skip"}:
            raise ConventionError(f"{block.where}: `skip` goes alone")
        return
    if not block.python:
        raise ConventionError(
            f"{block.where}: a {block.language or 'plain'} block: mark it "
            "`<!-- doc-test: skip REASON -->` (see docs/contributing.md)"
        )
    if block.file is not None:
        if block.setup:
            raise ConventionError(f"{block.where}: a `file` block takes no `setup`")
        if "/" in block.file or block.file.startswith(".") or not block.file.endswith(".py"):
            raise ConventionError(f"{block.where}: `file` takes a .py name in the project folder")
    for part, code in (("setup", block.setup), ("block", block.code), ("check", block.check)):
        try:
            ast.parse(code, filename=f"{block.where} ({part})")
        except SyntaxError as error:
            raise ConventionError(f"{block.where}: the {part} does not compile: {error}") from None


def all_blocks() -> list[Block]:
    blocks: list[Block] = []
    for document in DOCUMENTS:
        # A document that breaks the convention fails
        # test_docs_follow_the_convention; its blocks are not run.
        with contextlib.suppress(ConventionError):
            blocks += parse(document)
    return blocks


BLOCKS = all_blocks()
RUNS = [block for block in BLOCKS if block.runs]


# -- running ------------------------------------------------------------------


def make_project(folder: Path, document: Path) -> None:
    """The page's project: its file blocks, examples/, doc_helpers.py."""
    names: dict[str, str] = {}
    for block in BLOCKS:
        if block.document == document and block.file is not None and block.skip is None:
            assert block.file not in names, f"{block.where}: a second block for {block.file}"
            names[block.file] = block.where
            (folder / block.file).write_text(block.code, encoding="utf-8")
    (folder / "doc_helpers.py").write_text(HELPERS, encoding="utf-8")
    (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)


def run(command: list[str], folder: Path) -> tuple[int, str]:
    """Run ``command`` in ``folder`` with a deadline; its whole process group
    is killed if it runs over (a server a block failed to stop, say)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return -1, output.decode(errors="replace") + f"\n[killed after {BLOCK_TIMEOUT} s]"
    return process.returncode, output.decode(errors="replace")


def numbered(source: str) -> str:
    return "\n".join(f"{n:4} | {text}" for n, text in enumerate(source.splitlines(), 1))


def run_module(folder: Path, name: str, source: str) -> tuple[int, str]:
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    return run([sys.executable, "-W", "error", "-c", f"import {name}"], folder)


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(d.relative_to(ROOT)) for d in DOCUMENTS])
def test_docs_follow_the_convention(document: Path) -> None:
    parse(document)  # raises ConventionError naming the line


@pytest.mark.parametrize("block", RUNS, ids=[block.where for block in RUNS])
def test_code_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    make_project(tmp_path, block.document)
    if block.file is None:
        source = "\n".join(
            part for part in (
                "# -- setup (doc-test marker) --\n" + block.setup if block.setup else "",
                f"# -- the block at {block.where} --\n" + block.code,
                "# -- check (doc-test marker) --\n" + block.check if block.check else "",
            ) if part
        )  # fmt: skip
        status, output = run_module(tmp_path, "doc_block", source)
        assert status == 0, f"{block.where} failed:\n{numbered(source)}\n--- output ---\n{output}"
        return
    if block.check:
        status, output = run_module(tmp_path, "doc_check", block.check)
        assert status == 0, (
            f"the check of {block.where} ({block.file}) failed:\n{numbered(block.check)}\n"
            f"--- output ---\n{output}"
        )
    if is_test_file(block.file):
        command = [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider"]
        status, output = run([*command, block.file], tmp_path)
        assert status == 0, f"pytest {block.file} ({block.where}) failed:\n{output}"
        assert re.search(r"\b[1-9][0-9]* passed\b", output), output


# -- the README's demo command ----------------------------------------------------


def test_readme_demo_command_serves_the_chat_demo(tmp_path: Path) -> None:
    """`python examples/chat/app.py`, the README's first command after the
    install, on a free port instead of 5000: the page and a room's socket."""
    port = free_port()
    base = f"127.0.0.1:{port}"
    log = (tmp_path / "demo.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "examples/chat/app.py", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + wait_time(20)
        while True:
            try:
                with urllib.request.urlopen(f"http://{base}/", timeout=wait_time(5)) as page:
                    assert page.url == f"http://{base}/room/lobby"
                    assert "<title>#lobby - chat</title>" in page.read().decode()
                break
            except urllib.error.URLError:
                assert process.poll() is None, (tmp_path / "demo.log").read_text()
                assert time.monotonic() < deadline, "the demo did not answer"
                time.sleep(0.05)  # the server gives no readiness signal but answering
        with connect(f"ws://{base}/ws/lobby?user=ann", open_timeout=wait_time(5)) as ws:
            # The browser client's protocol: where the room stands, then
            # each message in an envelope with its position.
            notice = json.loads(ws.recv(timeout=wait_time(5)))
            assert (notice["room"], notice["recovered"]) == ("lobby", None)
            joined = {"kind": "join", "user": "ann", "here": ["ann"]}
            assert json.loads(ws.recv(timeout=wait_time(5)))["data"] == joined
            ws.send(json.dumps({"user": "ann", "text": "hello"}))
            hello = json.loads(ws.recv(timeout=wait_time(5)))["data"]
            assert hello == {"user": "ann", "text": "hello"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(wait_time(10))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


# -- the extractor itself -------------------------------------------------------


def parse_text(tmp_path: Path, text: str) -> list[Block]:
    sample = tmp_path / "sample.md"
    sample.write_text(textwrap.dedent(text), encoding="utf-8")
    return parse(sample, root=tmp_path)


def test_an_unmarked_python_block_runs_and_a_marked_one_carries_its_markers(
    tmp_path: Path,
) -> None:
    blocks = parse_text(
        tmp_path,
        """\
        Text.

        ```python
        print("hello")
        ```

        <!-- doc-test: setup
        from app import app
        -->

        <!-- doc-test: check
        assert app
        -->
        ```python
        app.config["X"] = 1
        ```

        - in a list:

          <!-- doc-test: file app.py -->
          ````py
          app = 1
          # ```
          ````
        """,
    )
    assert [(b.line, b.language, b.runs) for b in blocks] == [
        (3, "python", True),
        (14, "python", True),
        (21, "py", False),
    ]
    assert blocks[1].setup == "from app import app\n"
    assert blocks[1].check == "assert app\n"
    assert blocks[2].file == "app.py"
    assert blocks[2].code == "app = 1\n# ```\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("```sh\nls\n```\n", "a sh block: mark it"),
        ("<!-- doc-test: skip -->\n```sh\nls\n```\n", "needs a reason"),
        ("<!-- doc-test: run -->\n```python\n1\n```\n", "unknown marker 'run'"),
        ("<!-- doc-test: skip why -->\n\nSome text.\n\n```sh\nls\n```\n", "must be followed"),
        ("```python\n1\n```\n<!-- doc-test: skip why -->\n", "no block under it"),
        ("<!-- doc-test: check\nassert (\n-->\n```python\n1\n```\n", "check does not compile"),
        ("<!-- doc-test: file ../app.py -->\n```python\n1\n```\n", "takes a .py name"),
        ("```python\n1\n", "unclosed code fence"),
        ("<!-- doc-test: skip why -->\n```{toctree}\nx\n```\n", "above a {toctree} directive"),
    ],
)
def test_a_block_that_breaks_the_convention_is_reported(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(ConventionError, match=re.escape(error)):
        parse_text(tmp_path, text)


def test_a_skipped_block_is_not_run_and_a_myst_directive_is_not_a_block(tmp_path: Path) -> None:
    blocks = parse_text(
        tmp_path,
        """\
        <!-- doc-test: skip needs a browser -->
        ```js
        ws = new WebSocket(url);
        ```

        ```{eval-rst}
        .. autoclass:: x
        ```

        ```{code-block} python
        :caption: a caption
        print(1)
        ```
        """,
    )
    assert [(b.language, b.skip, b.runs) for b in blocks] == [
        ("js", "needs a browser", False),
        ("python", None, True),
    ]
    assert blocks[1].code == "print(1)\n"


def test_every_document_has_blocks_that_run() -> None:
    """The extractor finds the blocks (a regex gone wrong would find none)."""
    documents = {block.document.name for block in RUNS}
    assert {"README.md", "quickstart.md", "testing.md", "hub.md"} <= documents, documents
    assert len(RUNS) >= 15, [block.where for block in RUNS]
