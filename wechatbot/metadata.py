"""What a plugin says about itself: description, usage, homepage.

The description and homepage come from the plugin's distribution (``Summary``,
``Home-page`` or a ``Project-URL``), as pip and PyPI show them; the usage is
the first paragraph of the plugin module's docstring after its first line. A plugin not
installed as a distribution (a ``plugins_dir`` file, one registered in code)
falls back to its docstring's first line for the description. They show in
``wechatbot plugins`` and in the host's ``help NAME``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

HOMEPAGE_LABELS = ("homepage", "home", "source", "repository", "documentation")


@dataclass(frozen=True)
class PluginMetadata:
    """A plugin's description, usage and homepage ("" when it gives none)."""

    description: str = ""
    usage: str = ""
    homepage: str = ""


def _homepage(meta: Any) -> str:
    page = (meta.get("Home-page") or "").strip()
    if page and page != "UNKNOWN":
        return page
    urls = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls[label.strip().casefold()] = url.strip()
    return next((urls[label] for label in HOMEPAGE_LABELS if label in urls), next(iter(urls.values()), ""))


def plugin_metadata(dist: Any = None, plugin: Any = None) -> PluginMetadata:
    """The metadata of a plugin from its distribution (``importlib.metadata``) and its object."""
    doc = inspect.getdoc(plugin) if plugin is not None else None
    summary, _, usage = (doc or "").partition("\n")
    description, homepage = "", ""
    if dist is not None:
        meta = dist.metadata
        description = (meta.get("Summary") or "").strip()
        homepage = _homepage(meta)
    if description in ("", "UNKNOWN"):
        description = summary.strip()
    return PluginMetadata(description, usage.strip().split("\n\n")[0].strip(), homepage)
