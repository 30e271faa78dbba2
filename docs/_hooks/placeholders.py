"""MkDocs hook: pages whose source another part of the project provides build before it lands.

* ``reference/configuration.md`` is generated from the experiment schema and committed by its
  generator (see the Development page); while a checkout lacks it, a short page says so.
* ``api/api.md`` documents ``vlsm.api``; while ``src/vlsm/api`` does not exist, it says so instead of
  failing the strict build.

Nothing is written to disk: the stand-ins exist only in the built site.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

CONFIGURATION = "reference/configuration.md"
CONFIGURATION_STAND_IN = """# Configuration reference

This page is generated from the experiment schema (`vlsm.config`) and committed as
`docs/reference/configuration.md`; this checkout does not hold it yet. Until it does, the
[Training](../training.md) page lists the recipe settings and `vlsm train --help` every flag.
"""
API_PAGE = "api/api.md"
API_STAND_IN = """# API: `vlsm.api`

`vlsm.api` (one Python function per `vlsm` command) is not part of this checkout yet.
"""


def _repo(config) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def on_files(files, config):
    if files.get_file_from_path(CONFIGURATION) is None:
        files.append(File.generated(config, CONFIGURATION, content=CONFIGURATION_STAND_IN))
    return files


def on_page_markdown(markdown, page, config, files):
    src = _repo(config) / "src" / "vlsm"
    if page.file.src_uri == API_PAGE and not ((src / "api.py").exists() or (src / "api").is_dir()):
        return API_STAND_IN
    return markdown
