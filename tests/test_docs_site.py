"""The built documentation site: every page, every internal link, the API
reference, and the front page in headless Chromium.

Run by ``tox -e docs`` right after ``sphinx-build`` has written the site to
docs/_build/html (``FSC_DOCS_HTML`` names another folder). Leaves a
screenshot of the front page in ``test-artifacts/docs-front-page.png``.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import importlib.util
import os
import re
import shutil
import signal
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import flask_sockets_channels
from tests.conftest import ROOT, require, wait_time

SITE = Path(os.environ.get("FSC_DOCS_HTML", ROOT / "docs" / "_build" / "html"))
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "docs-front-page.png"
WIDTH, HEIGHT = 1280, 900
PAGES = sorted(path.stem for path in (ROOT / "docs").glob("*.md"))

# The public names of SPEC §2, §7, §8, §11 and §12 besides flask_sockets_channels.__all__
# (all of which are checked too): (module, dotted name). A name the installed
# package does not have yet is not required.
MEMBERS = [
    ("flask_sockets_channels", "Sockets.init_app"),
    ("flask_sockets_channels", "Sockets.connections"),
    ("flask_sockets_channels", "Sockets.close_all"),
    ("flask_sockets_channels", "Sockets.hub"),
    ("flask_sockets_channels", "Sockets.stats"),
    ("flask_sockets_channels", "Channel.close"),
    ("flask_sockets_channels", "Channel.closed"),
    ("flask_sockets_channels", "Connection.close"),
    ("flask_sockets_channels", "Connection.closed"),
    ("flask_sockets_channels", "Connection.close_code"),
    ("flask_sockets_channels", "Connection.close_reason"),
    ("flask_sockets_channels", "Hub.from_url"),
    ("flask_sockets_channels", "Hub.join"),
    ("flask_sockets_channels", "Hub.publish"),
    ("flask_sockets_channels", "Hub.members"),
    ("flask_sockets_channels", "Hub.wait_ready"),
    ("flask_sockets_channels", "Hub.presence"),
    ("flask_sockets_channels.testing", "WebSocketTestClient"),
    ("flask_sockets_channels.testing", "WebSocketTestClient.connect"),
    ("flask_sockets_channels.testing", "HandshakeRejected"),
    ("flask_sockets_channels.testing", "WebSocketSession.send"),
    ("flask_sockets_channels.testing", "WebSocketSession.receive"),
    ("flask_sockets_channels.testing", "WebSocketSession.close"),
    ("flask_sockets_channels.testing", "WebSocketSession.close_code"),
    ("flask_sockets_channels.metrics", "register"),
]


class Page(HTMLParser):
    """The ids a page defines and the links it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link", "use")) or (
                name == "src" and tag in ("img", "script")
            ):
                self.links.append(value)


def read_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site() -> Path:
    require((SITE / "index.html").exists(), f"no docs site in {SITE}: run `tox -e docs`")
    return SITE


@pytest.mark.parametrize("name", PAGES)
def test_every_page_is_built(site: Path, name: str) -> None:
    page = read_page(site / f"{name}.html")
    assert page.ids, name


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    pages = {path: read_page(path) for path in site.rglob("*.html") if "_static" not in path.parts}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # another site (not fetched: the build needs no network)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.exists():
                broken.append(f"{path.relative_to(site)}: {link} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else read_page(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{path.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken)
    assert len(pages) >= len(PAGES)


def api_names() -> list[str]:
    """The dotted names the API reference must document, as far as the
    installed package has them."""
    names = [f"flask_sockets_channels.{name}" for name in flask_sockets_channels.__all__]
    for module_name, dotted in MEMBERS:
        if importlib.util.find_spec(module_name) is None:
            continue  # a module of a later version
        try:
            target: object = importlib.import_module(module_name)
        except ImportError:  # it needs an extra (prometheus): Sphinx mocks that
            names.append(f"{module_name}.{dotted}")
            continue
        with contextlib.suppress(AttributeError):  # a name of a later version
            for part in dotted.split("."):
                target = getattr(target, part)
            names.append(f"{module_name}.{dotted}")
    return names


def test_the_api_reference_documents_every_public_name(site: Path) -> None:
    ids = read_page(site / "api.html").ids
    missing = [name for name in api_names() if name not in ids]
    assert not missing, f"not in docs/api.md: {missing}"
    assert "module-flask_sockets_channels.pytest_plugin" in ids  # the ws_client fixture


@contextlib.contextmanager
def chromium_session() -> object:
    """Runs chromium commands in their own process groups; each group is
    killed when its command has ended (or timed out), so no renderer or GPU
    process outlives the test."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    require(executable is not None, "Chromium is not installed (apt-get install chromium)")

    def run(profile: Path, *args: str) -> str:
        command = [
            str(executable), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=5000", *args,
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = process.communicate(timeout=wait_time(60))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        assert process.returncode == 0, err.decode(errors="replace")[-2000:]
        return out.decode(errors="replace")

    yield run


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB(A) bytes) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat = 8, b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up = previous[x]
            up_left = previous[x - channels] if x >= channels else 0
            if kind == 1:
                row[x] = (row[x] + left) & 0xFF
            elif kind == 2:
                row[x] = (row[x] + up) & 0xFF
            elif kind == 3:
                row[x] = (row[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - up_left
                distances = (abs(guess - left), abs(guess - up), abs(guess - up_left))
                nearest = (left, up, up_left)[distances.index(min(distances))]
                row[x] = (row[x] + nearest) & 0xFF
        rows.append(bytes(row))
        previous = row
    return width, height, [row[i : i + 3] for row in rows for i in range(0, stride, channels)]


def test_front_page_in_headless_chromium_shows_the_navigation_and_the_quickstart(
    site: Path, tmp_path: Path
) -> None:
    front = (site / "index.html").resolve().as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    with chromium_session() as chromium:
        dom = chromium(tmp_path / "profile-dom", "--dump-dom", front)
        chromium(tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}", front)

    # What the page holds once loaded: the sidebar's navigation to every page,
    # and the quickstart (its heading and its code) at the top of the content.
    navigation = dom[dom.index('class="sidebar-tree"') :]
    for name in PAGES:
        if name != "index":
            assert f'href="{name}.html"' in navigation, f"{name} is not in the navigation"
    content = dom[dom.index('id="furo-main-content"') :]
    assert content.index('id="quickstart"') < content.index('id="pages"')
    text = html.unescape(re.sub(r"<[^>]+>", "", content))
    assert "pip install -e ." in text
    assert "@sockets.messages()\ndef echo(receiver, sender):" in text

    # What the screenshot shows: the whole window, drawn (not one flat
    # colour), with the sidebar (its own background) left of the content.
    width, height, pixels = png_pixels(SCREENSHOT)
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(set(pixels)) > 50, "the screenshot is (nearly) blank"
    row = height - 20  # below the sidebar's links, above the footer
    sidebar = pixels[row * width + 40]
    page = pixels[row * width + width * 3 // 4]
    assert sidebar != page, "no sidebar on the screenshot"
