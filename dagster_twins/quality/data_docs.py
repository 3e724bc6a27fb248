"""Great Expectations Data Docs that render offline: the CDN styles, fonts and scripts its pages ask for are copied
into the site (``static/vendor/``, from ``data_docs_static/``, see its README) and the pages point at those copies.
GX's logo (an image on S3) is dropped, and nothing else in a page is loaded from the network."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

VENDOR_SOURCE = Path(__file__).with_name("data_docs_static")
VENDOR_DIR = Path("static") / "vendor"  # inside the Data Docs site

# Each CDN address GX 1.24's templates use -> the vendored file.
CDN_FILES = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "js/bootstrap.min.js",
    "https://code.jquery.com/jquery-3.7.1.min.js": "js/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "js/popper.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "css/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "js/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "css/bootstrap-table-filter-control.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "js/bootstrap-table-filter-control.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "js/bootstrap-datepicker.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "css/bootstrap-prefers-dark.css",
    "https://cdn.jsdelivr.net/npm/vega@5": "js/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "js/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "js/vega-embed.min.js",
}
_CROSS_ORIGIN = re.compile(r'\s(?:integrity="[^"]*"|crossorigin="[^"]*")')
_REMOTE_IMAGE = re.compile(r'<img[^>]+src="https?://[^"]*"[^>]*>')
_REMOTE_RESOURCE = re.compile(r'<(?:link|script|img)[^>]+(?:href|src)="(https?://[^"]+)"')


def localize_page(html: str, vendor: str) -> str:
    """One page with its CDN files replaced by ``vendor``/<file> (a relative path) and remote images removed."""
    for url, local in CDN_FILES.items():
        html = html.replace(f'"{url}"', f'"{vendor}/{local}"')
    # A crossorigin script is refused from file:// (the pages are opened as files): local copies need neither it
    # nor the CDN's integrity hash.
    html = _CROSS_ORIGIN.sub("", html)
    return _REMOTE_IMAGE.sub("", html)


def remote_resources(html: str) -> list[str]:
    """The addresses a page would still load from the network (stylesheets, scripts, images)."""
    return _REMOTE_RESOURCE.findall(html)


def localize_site(site: Path) -> int:
    """Copy the vendored files into the Data Docs site at ``site`` and point every page at them; returns the number
    of pages changed. Pages already pointing at the copies are left alone, so calling it after every build is cheap."""
    if not site.exists():
        return 0
    target = site / VENDOR_DIR
    if not (target / "js" / "jquery.min.js").exists():
        shutil.copytree(VENDOR_SOURCE, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    changed = 0
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        vendor = Path(os.path.relpath(target, page.parent)).as_posix()
        localized = localize_page(html, vendor)
        if localized != html:
            page.write_text(localized, encoding="utf-8")
            changed += 1
    return changed
