"""The course website: ``klcourse site [--out build/site]``.

Builds a static HTML book of every notebook with its committed outputs — nothing is re-executed —
with Sphinx, MyST-NB and the Sphinx Book Theme (the ``site`` extra). The landing page is made from
the README's own sections (what the course teaches, how to set it up, the course map with the
run times that ``klcourse regenerate`` measured), and so is the page on carrying the course to a real
model, so each of those has one home. Navigation follows the course order: the notebooks, the
glossary and that page, then the solutions.

The site works offline: math is typeset by the MathJax that ``jupyter-server-mathjax`` ships,
copied into the site, and each widget output is drawn from the widget state stored in the notebook
(sliders, progress bars, the output it showed) instead of loading the widget library from the web.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from klcourse.tools import cli
from klcourse.tools.regenerate import notebook_paths

PROG = "klcourse site"
ROOT = Path(__file__).resolve().parents[2]
#: Where the site goes unless ``--out`` says otherwise (``build/`` is not committed).
DEFAULT_OUT = ROOT / "build" / "site"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# MathJax 2 from jupyter-server-mathjax: the TeX-AMS config of the Jupyter notebook, typesetting
# exactly the \(…\) and \[…\] spans that Sphinx writes for MyST's $…$ and $$…$$. A TeX error shows
# as an error (``merror``), not as the formula's source text, so that a test can find it.
MATHJAX_CONFIG = {
    "TeX": {"noErrors": {"disabled": True}, "noUndefined": {"disabled": True}},
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        "processEnvironments": True,
    },
    # jupyter-server-mathjax ships the STIX-Web fonts only (as the classic notebook configured it)
    "HTML-CSS": {"availableFonts": [], "webFont": "STIX-Web", "imageFont": None, "preferredFont": None},
    "messageStyle": "none",
}

# The book theme styles every ``span.math`` as a clipped inline flex box, meant for MathJax 3. MathJax 2
# also names its own inner box ``span.math``, and a clipped inline box sits on its bottom edge: the
# formula would float above the line. Plain inline flow, unclipped, puts it on the baseline.
CSS = """span.math.notranslate { display: inline; }
.MathJax span.math { overflow: visible; }
"""


def readme_sections(readme: Path) -> dict[str, str]:
    """The README split at its ``## `` headings: heading → body; the text before the first under ``""``."""
    sections: dict[str, str] = {}
    heading, lines = "", []
    for line in readme.read_text().splitlines()[1:]:  # below the title
        if line.startswith("## "):
            sections[heading] = "\n".join(lines).strip()
            heading, lines = line[3:].strip(), []
        else:
            lines.append(line)
    sections[heading] = "\n".join(lines).strip()
    return sections


def notebook_title(path: Path) -> str:
    """A notebook's title: the text of its first ``# `` heading."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (m := re.search(r"^# (.+)$", cell.source, re.MULTILINE)):
            return m.group(1).strip()
    raise ValueError(f"{path} has no '# ' title heading")


def landing_page(root: Path) -> str:
    """The site's index page (MyST Markdown): the README's introduction, its course map with each
    notebook's name linked to its page, its set-up section, and the navigation in course order."""
    sections = readme_sections(root / "README.md")
    notebooks = root / "notebooks"
    chapters = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))

    def link(m: re.Match) -> str:
        path = notebooks / f"{m.group(1)}.ipynb"
        return f"| [{notebook_title(path)}]({path.name}) |" if path.exists() else m.group(0)

    course_map = re.sub(r"^\| `(\w+)` \|", link, sections["The notebooks"], flags=re.MULTILINE)
    toc = [
        ("The course", [p.stem for p in chapters]),
        ("Reference", ["glossary", REAL_MODELS_PAGE]),
        ("Solutions", [f"solutions/{p.stem}" for p in sorted((notebooks / "solutions").glob("*.ipynb"))]),
    ]
    trees = "\n\n".join(
        f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n" + "\n".join(docs) + "\n```"
        for caption, docs in toc
    )
    return (
        "# KL divergence in RLHF — a self-paced notebook course\n\n"
        f"{sections['']}\n\n## The course map\n\n{course_map}\n\n"
        f"## Set up\n\n{sections['Start the course']}\n\n{trees}\n"
    )


def _widget_parts(model_id: str, state: dict) -> list:
    """A widget drawn from its stored state, as a list of HTML strings and notebook outputs."""
    model = state.get(model_id)
    if model is None:
        return ["<em>(a widget whose state was not saved)</em>"]
    name, s = model["model_name"], model["state"]
    if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
        parts: list = []
        for child in s.get("children", []):
            parts += _widget_parts(child.removeprefix("IPY_MODEL_"), state)
        if name == "HBoxModel" and all(isinstance(part, str) for part in parts):  # a row, e.g. tqdm's bar
            return [f"<div style='display:flex;gap:0.5em;align-items:center'>{''.join(parts)}</div>"]
        return parts
    if name == "OutputModel":
        return [nbformat.from_dict(output) for output in s.get("outputs", [])]
    if name in ("HTMLModel", "HTMLMathModel"):
        return [f"<span>{s.get('value', '')}</span>"]
    if name == "LabelModel":
        return [f"<span>{html.escape(s.get('value', ''))}</span>"]
    if name.endswith("SliderModel"):
        label = html.escape(s.get("description", ""))
        value = s.get("value")
        return [
            f"<div><label>{label} <input type='range' disabled min='{s.get('min')}' max='{s.get('max')}' "
            f"step='{s.get('step')}' value='{value}'> {value}</label></div>"
        ]
    if name.endswith("ProgressModel"):
        return [f"<progress style='flex:0 0 12em' max='{s.get('max')}' value='{s.get('value')}'></progress>"]
    return [f"<em>({html.escape(name.removesuffix('Model'))} widget)</em>"]


def static_widgets(nb: nbformat.NotebookNode) -> int:
    """Replace every widget output of ``nb`` by a static drawing of the state it was saved with
    (consecutive HTML pieces joined into one ``text/html`` output), and drop the widget state from
    the metadata so no page asks for the widget library. Returns the number of widgets replaced."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    replaced = 0
    for cell in nb.cells:
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            replaced += 1
            pieces: list[str] = []
            for part in [*_widget_parts(view["model_id"], state), None]:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                if pieces:
                    body = "".join(pieces)
                    data = {"text/html": f"<div class='klcourse-widget'>{body}</div>"}
                    outputs.append(nbformat.v4.new_output("display_data", data=data))
                    pieces = []
                if part is not None:
                    outputs.append(part)
        if "outputs" in cell:
            cell.outputs = outputs
    return replaced


def sphinx_config(static: Path) -> dict:
    """The Sphinx settings of the site; ``static`` is the folder copied to the site's ``_static``."""
    return {
        "project": "KL divergence in RLHF",
        "html_title": "KL divergence in RLHF",
        "extensions": ["myst_nb"],
        "html_theme": "sphinx_book_theme",
        "html_theme_options": {"show_toc_level": 2, "use_download_button": True},
        "html_static_path": [str(static)],
        "html_css_files": ["klcourse.css"],
        "html_show_sourcelink": False,
        "nb_execution_mode": "off",
        "nb_merge_streams": True,
        "myst_enable_extensions": ["dollarmath", "amsmath"],
        "myst_update_mathjax": False,
        "mathjax_path": "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full",
        "mathjax2_config": MATHJAX_CONFIG,
        "exclude_patterns": ["_static"],
    }


#: The README section that is also the site's page on real models, and that page's name.
REAL_MODELS = "Carry it to a real model"
REAL_MODELS_PAGE = "real-models"


def real_models_page(root: Path) -> str:
    """The site's page on running the course's PPO and sweep on hub models: the README's section."""
    return f"# {REAL_MODELS}\n\n{readme_sections(root / 'README.md')[REAL_MODELS]}\n"


def write_sources(root: Path, src: Path) -> list[Path]:
    """The site's source folder: the landing page, the notebooks with static widgets, MathJax.
    Returns the notebooks written."""
    import jupyter_server_mathjax

    notebooks = root / "notebooks"
    written = []
    for path in [*notebook_paths(notebooks), notebooks / "glossary.ipynb"]:
        nb = nbformat.read(path, as_version=4)
        static_widgets(nb)
        target = src / path.relative_to(notebooks)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    (src / "index.md").write_text(landing_page(root))
    (src / f"{REAL_MODELS_PAGE}.md").write_text(real_models_page(root))
    shutil.copytree(root / "docs", src / "docs")  # the README's pictures, which the landing page shows
    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(mathjax, src / "_static" / "mathjax")
    (src / "_static" / "klcourse.css").write_text(CSS)
    return written


class SiteWarnings(RuntimeError):
    """The site's sources gave Sphinx warnings (a broken link, an image that is not there, bad markup)."""


def build_site(root: Path, out: Path, quiet: bool = False) -> list[Path]:
    """Build the site of the course in ``root`` into ``out``; return its pages (``.html`` files of
    the course: the landing page and one per notebook).

    The site is built in a scratch folder and replaces ``out`` only once Sphinx has finished without
    a warning: a broken link, a missing image or bad markup raises :class:`SiteWarnings` instead.
    """
    from sphinx.application import Sphinx

    with tempfile.TemporaryDirectory(prefix="klcourse-site-") as scratch:
        src, html_dir = Path(scratch) / "src", Path(scratch) / "html"
        notebooks = write_sources(root, src)
        app = Sphinx(
            str(src),
            None,
            str(html_dir),
            str(Path(scratch) / "doctrees"),
            "html",
            confoverrides=sphinx_config(src / "_static"),
            status=None if quiet else sys.stdout,
            warningiserror=True,
            freshenv=True,
        )
        app.build()
        if app.statuscode != 0:  # Sphinx printed each warning; the previous site stays in place
            raise SiteWarnings("Sphinx reported warnings (printed above); no site was written")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(html_dir, out)
    return [out / "index.html"] + [out / p.relative_to(src).with_suffix(".html") for p in notebooks]


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and build the site."""
    p = cli.Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=cli.writable_dir, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)
    cli.run(lambda: _main(args), PROG, lambda: f"{args.out} still holds the previous site, if any")


def _main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    try:
        pages = build_site(ROOT, args.out, quiet=args.quiet)
    except SiteWarnings as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(pages)} pages in {args.out} in {time.perf_counter() - t0:.1f} s; open {pages[0]}")
    return 0


if __name__ == "__main__":
    main()
