"""Sphinx configuration of the course website (built by scripts/build_site.py, which copies this folder,
the notebooks and README.md into a staging folder and generates the library reference pages)."""
project = "medseg-edu"
author = "medseg-edu authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = "medseg-edu: a course on medical image segmentation"
html_theme_options = {"description": "Medical image segmentation, week by week", "show_related": True}
# The notebooks arrive already executed (in fast mode) or without outputs: myst-nb never runs them.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
suppress_warnings = ["myst.header", "misc.highlighting_failure", "myst.xref_missing"]


def _plain_asterisks(app, what, name, obj, options, lines):
    """The docstrings are plain text: ``(*spatial)``, ``**kwargs``, ``|a - b|`` or ``patients_`` are not
    reST markup. Escape them outside inline literals and doctest lines, so docutils neither warns nor
    links to an error message."""
    import re

    for i, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...")):
            continue
        parts = re.split(r"(``.*?``|`[^`]*`)", line)
        lines[i] = "".join(p if p.startswith("`") else
                           re.sub(r"(\w)_(?=\W|$)", r"\1\\_", p.replace("*", r"\*").replace("|", r"\|"))
                           for p in parts)


def setup(app):
    app.connect("autodoc-process-docstring", _plain_asterisks)
