"""The documentation: the MkDocs site builds offline with no warning, the README stays short, and every
bash/python block of README.md and docs/ runs on tiny data unless its first line says what it needs (a GPU,
pretrained weights, a real dataset, a download, a cluster, a server); then its ``vlsm`` commands must still
parse and its Python compile. The conventions: docs/development.md, "The documentation"."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docs.blocks import (
    DOCS,
    NEEDS,
    PYTHON,
    REPO,
    SHELL,
    STATIC,
    PageRunner,
    make_targets,
    makefile_targets,
    pages,
    pip_extras,
    read_blocks,
    starts_empty,
    vlsm_argvs,
)

PAGES = pages()
GETTING_STARTED = DOCS / "getting-started.md"
README_MAX_LINES = 200
FIGURE = DOCS / "assets" / "comparison.png"


def _name(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def _runs_blocks(page: Path) -> bool:
    try:
        return any(b.runs for b in read_blocks(page))
    except ValueError:
        return True  # a malformed page: its test reports why


def _run_page(page: Path, runner: PageRunner) -> None:
    for block in read_blocks(page):
        if block.runs:
            runner.run(block)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on one intra-op thread: on a shared 2-core machine two threads that wait for each other
    make a tiny convolution many times slower, and one thread costs nothing on a quiet one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def getting_started(tmp_path_factory):
    """The folder Getting started leaves behind: its blocks run once, here; the other pages start from a copy."""
    folder = tmp_path_factory.mktemp("getting-started")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        _run_page(GETTING_STARTED, PageRunner(folder))
    return folder


# Running the pages' blocks is the docs as a user types them, a shell and a new process per command: `slow`
# (make test); the checks below that parse every block and build the site run in make test-fast too.
@pytest.mark.slow
def test_getting_started_runs(getting_started):
    for made in ("data/synthetic/anns/test.json", "runs/unet-d/summary.json", "runs/clipseg-b/model",
                 "results.md", "figure.png"):
        assert (getting_started / made).exists(), made


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p != GETTING_STARTED and _runs_blocks(p)], ids=_name)
def test_page_blocks_run(page, request, tmp_path):
    folder = tmp_path / "work"
    if starts_empty(page):
        folder.mkdir()
    else:
        shutil.copytree(request.getfixturevalue("getting_started"), folder, symlinks=True)
    _run_page(page, PageRunner(folder))


@pytest.fixture(scope="module")
def parser():
    from vlsm.cli import build_parser

    return build_parser()


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_marked_blocks_still_parse(page, parser):
    """A block that cannot run here still names real commands, flags, make targets and extras."""
    problems = []
    targets, extras = makefile_targets(), _extras()
    for block in read_blocks(page):
        if not block.needs:
            continue
        if block.kind == "python":
            try:
                compile(block.code, block.where, "exec")
            except SyntaxError as err:
                problems.append(f"{block.where}: {err}")
            continue
        for offset, argv in vlsm_argvs(block.code):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    parser.parse_args(argv)
                except SystemExit:
                    problems.append(f"{block.where}, line {block.line + 1 + offset}: vlsm {' '.join(argv)}\n  "
                                    f"{err.getvalue().strip().splitlines()[-1]}")
        problems += [f"{block.where}, line {block.line + 1 + o}: no make target {t!r}"
                     for o, t in make_targets(block.code) if t not in targets]
        if extras is not None:
            problems += [f"{block.where}, line {block.line + 1 + o}: pyproject.toml has no extra {e!r}"
                         for o, e in pip_extras(block.code) if e not in extras]
    assert not problems, "\n".join(problems)


def _extras():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return None
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return set(data["project"].get("optional-dependencies", {}))


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_code_blocks_are_well_formed(page):
    """Every fence names its language; markers use the known reasons; YAML blocks parse."""
    problems = []
    try:
        blocks = read_blocks(page)
    except ValueError as err:
        pytest.fail(str(err))
    for block in blocks:
        if block.lang not in SHELL | PYTHON | STATIC:
            problems.append(f"{block.where}: fence language {block.lang!r}: use one of "
                            f"{', '.join(sorted(SHELL | PYTHON | STATIC))} (text for output)")
        if block.lang == "yaml":
            try:
                yaml.safe_load(block.code)
            except yaml.YAMLError as err:
                problems.append(f"{block.where}: YAML does not parse: {err}")
        if block.lang in STATIC and re.match(r"\s*#\s*needs:", block.code):
            problems.append(f"{block.where}: a {block.lang} block never runs; drop its '# needs:' line")
    assert not problems, "\n".join(problems)
    assert set(NEEDS) == {"gpu", "weights", "data", "download", "cluster", "server"}  # docs/development.md


def test_readme_is_short_and_links_to_the_docs():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\((docs/[^)#\s]+)", text)
    assert targets, "the README links to the documentation pages"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def _mkdocs_installed() -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason=f'the docs tools are not installed ({module} is missing): '
                                           f'pip install -e ".[docs]"')


def test_mkdocs_build_strict_offline(tmp_path):
    """`mkdocs build --strict`: no warning (broken links, pages left out of the nav, docstrings that do not
    parse), and nothing fetched: the proxies point at a closed port, so any download would fail."""
    _mkdocs_installed()
    site = tmp_path / "site"
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "HF_HUB_OFFLINE": "1", "HTTP_PROXY": dead,
           "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead, "NO_PROXY": "", "no_proxy": ""}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    api = (site / "api" / "vlsm" / "index.html").read_text(encoding="utf-8")
    for name in ("create_model", "load_pretrained", "list_models", "Predictor"):
        assert 'id="vlsm.' in api and name in api, name
    for page in ("metrics", "data", "runs"):
        assert 'class="doc doc-heading"' in (site / "api" / page / "index.html").read_text(encoding="utf-8")
    assert (site / "serve.png").is_file() and (site / "assets" / "comparison.png").is_file()
    assert (site / "reference" / "configuration" / "index.html").is_file()


def test_comparison_figure(tmp_path):
    """docs/assets/comparison.png is `vlsm demo`'s figure; VLSM_UPDATE_FIGURES=1 makes it again (minutes)."""
    if os.environ.get("VLSM_UPDATE_FIGURES"):
        from vlsm.cli import main

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HF_HUB_OFFLINE", "1")
            assert main(["demo", "--epochs", "60", "--minutes", "30", "--out", str(tmp_path / "demo")]) == 0
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "demo" / "comparison.png", FIGURE)
    data = FIGURE.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
