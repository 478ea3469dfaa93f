"""Sphinx configuration for bpcore's documentation (``nox -s docs`` builds it strictly).

Sphinx rather than MkDocs: autodoc with numpydoc renders the numpydoc docstrings every public name
has, as NumPy's, CuPy's and SciPy's references do; MyST keeps the pages in Markdown, readable on
GitHub as they are; Sphinx's ``-W`` turns every warning (a broken link, a bad docstring, a missing
page) into an error.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document the checkout's bpcore, installed or not

import bpcore  # noqa: E402

project = "bpcore"
author = "bpcore maintainers"
copyright = "2026, bpcore maintainers"
release = bpcore.__version__
version = release

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

# MyST: $...$ and $$...$$ math, fenced directives, and headings anchored for links.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# autodoc + numpydoc: members in source order, type hints left to the docstrings (numpydoc's
# "Parameters" sections say them in words), every public name required to have a docstring.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
default_role = "py:obj"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = {"GL08"}  # GL08: the object has no docstring
# Documented by a ``#:`` comment, which autodoc shows and numpydoc's validator does not read.
numpydoc_validation_exclude = {
    r"\.last_loss$",
    r"\.loss_scaler$",
    r"\.native_conv2d$",
    r"\.native_max_pool2d$",
    r"\.native_relu_backward$",
}

html_theme = "furo"
html_title = f"bpcore {release}"
html_static_path: list[str] = []
