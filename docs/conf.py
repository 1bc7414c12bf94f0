"""Sphinx configuration of the documentation site.

The Markdown pages in this folder are the source (read by MyST); the API
reference (api.md) is generated from the docstrings of the installed
package. Build it with `tox -e docs`, or after `pip install -e '.[docs]'`:

    sphinx-build -W -n -b html docs docs/_build/html

-W turns every warning into an error; -n (nitpicky) and MyST's checks make a
broken internal link, heading anchor or API cross-reference a warning.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from docutils.nodes import Element
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

import flask_sockets_channels

project = "flask-sockets-channels"
author = "The flask-sockets-channels authors"
copyright = f"2026, {author}"
# The version has one source: flask_sockets_channels.__version__ (setup.cfg
# reads it too).
release = version = flask_sockets_channels.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: `[text](page.md#a-heading)` links resolve to headings of levels 1-3
# (GitHub's anchors), and a link to a missing page or anchor is a warning.
myst_heading_anchors = 3

# A cross-reference that does not resolve is a warning (-n); these name
# classes of other projects, which have no inventory here (the build needs
# no network).
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(flask|werkzeug|queue|threading|logging|datetime|typing|collections"
        r"|re|socket|dataclasses|pytest|_pytest|redis|prometheus_client|websockets)(\..*)?",
    ),
    (r"py:.*", r"(Flask|Request|Response|Logger|LoggerAdapter|Event|Queue|Any|Callable|T)"),
    (r"py:.*", r"(Sequence|Mapping|Iterator|Iterable|Union|Optional|timedelta|TracebackType)"),
    (r"py:.*", r"(Self|NoneType|OriginPolicy|Duration|Raw|Outgoing|Model|ModelT)"),
    (r"py:.*", r"CollectorRegistry"),  # prometheus_client's, named without its module
    (r"py:.*", r"(flask_sockets_channels\.\w+\.)?Transport"),  # internal interface
    # Type variables and aliases of the modules, not API (older Sphinx names
    # them without their module).
    (r"py:.*", r"(flask_sockets_channels\.\w+\.)?(T|View|Raw|Outgoing|OriginPolicy|Duration)"),
    (r"py:.*", r"(flask_sockets_channels\.\w+\.)?(Decorator|HeadersArg|QueryArg)"),
    # queue.Queue's own methods, which Channel inherits (not documented here).
    (r"py:meth", r"(join|task_done|qsize|empty|full|put_nowait|get_nowait)"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
# The metrics module needs the prometheus extra; the reference needs only
# its docstrings.
autodoc_mock_imports = ["prometheus_client"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "furo"
html_title = f"flask-sockets-channels {release}"
html_static_path: list[str] = []


# `.. automodule-if-present:: NAME` (in api.md's eval-rst blocks) is
# `.. automodule:: NAME` where the installed package has that module, and a
# one-line note where it does not yet: a module that a later version adds is
# listed in advance, without a failed import (a warning, so an error with -W).
OPTIONAL_AUTOMODULE = re.compile(r"^\.\. automodule-if-present:: *(\S+)\n((?:[ \t]+\S.*\n)*)", re.M)


def expand_optional_automodules(app: Sphinx, docname: str, source: list[str]) -> None:
    def expand(match: re.Match[str]) -> str:
        module, options = match[1], match[2]
        if importlib.util.find_spec(module) is not None:
            return f".. automodule:: {module}\n{options}"
        return f"``{module}``: not in version {release}.\n"

    source[0] = OPTIONAL_AUTOMODULE.sub(expand, source[0])


# Napoleon reads "text: more" on the first line of a property's docstring as
# "type: description". The docstrings here never give a type that way (the
# annotations do), so a property's docstring is taken as it is: kept before
# napoleon's handler (priority 500) runs, put back after it.
_property_docstrings: dict[str, list[str]] = {}


def keep_property_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if what == "property":
        _property_docstrings[name] = list(lines)


def restore_property_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if what == "property" and name in _property_docstrings:
        lines[:] = _property_docstrings.pop(name)


# The docstrings name the package's public names without the package
# (:meth:`Sockets.stats`, :class:`ConnectionClosed`); the reference documents
# them as flask_sockets_channels.NAME. A Python reference that does not
# resolve and starts with such a name is looked up again under that path.
def resolve_package_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: Element
) -> Element | None:
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or target.split(".")[0] not in flask_sockets_channels.__all__:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env,
        node["refdoc"],
        app.builder,
        node["reftype"],
        f"flask_sockets_channels.{target}",
        node,
        contnode,
    )


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", expand_optional_automodules)
    app.connect("missing-reference", resolve_package_name)
    app.connect("autodoc-process-docstring", keep_property_docstring, priority=400)
    app.connect("autodoc-process-docstring", restore_property_docstring, priority=600)
    return {"parallel_read_safe": True}
