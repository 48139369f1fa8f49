"""Finding, selecting, ordering and loading plugins.

Plugins come from the ``wechatbot`` entry-point group (the entry point's name is
the plugin's name everywhere) and from loose ``.py`` files in ``plugins_dir``.
Nothing is imported until it has been selected, so ``disabled`` and
``WECHATBOT_PLUGINS`` can switch off a plugin that breaks on import.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pluggy

from . import hookspecs
from .metadata import PluginMetadata, plugin_metadata
from .errors import WechatbotError

ENTRY_POINT_GROUP = "wechatbot"


class PluginLoadError(WechatbotError, RuntimeError):
    """A plugin cannot be found or loaded; the message names it and the way out."""


class PluginStartError(WechatbotError, RuntimeError):
    """A plugin's ``startup`` hook failed; the message names the plugin, the app and the way out."""


@dataclass
class Candidate:
    """An installed plugin that has not been imported yet."""

    name: str
    source: str
    version: str | None
    load: Callable[[], Any]
    dist: Any = None  # the importlib.metadata Distribution, when installed as one


@dataclass
class LoadedPlugin:
    """A loaded plugin, for ``wechatbot plugins`` and the logs."""

    name: str
    source: str
    version: str | None
    plugin: Any
    dist: Any = None

    @property
    def metadata(self) -> PluginMetadata:
        """Description, usage and homepage (``wechatbot.metadata``)."""
        return plugin_metadata(self.dist, self.plugin)

    def hooks(self, pm: pluggy.PluginManager) -> list[str]:
        """Names of the hooks this plugin implements."""
        return sorted(caller.name for caller in pm.get_hookcallers(self.plugin) or [])


def _how_to_disable(name: str) -> str:
    return (
        f"disable it with `[wechatbot] disabled = {name}` or start with "
        f"WECHATBOT_PLUGINS set to the plugins you want (empty: none)"
    )


def installed_plugins(plugins_dir: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Candidate]:
    """Every plugin that could be loaded, by name, without importing any."""
    found: dict[str, Candidate] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        source = f"entry point {ep.name} = {ep.value}" + (f" ({dist.name})" if dist else "")
        found[ep.name] = Candidate(ep.name, source, dist.version if dist else None, ep.load, dist)
    if plugins_dir:
        folder = Path(plugins_dir)
        if not folder.is_dir():
            raise PluginLoadError(f"[wechatbot] plugins_dir {plugins_dir!r} is not a folder")
        for path in sorted(folder.glob("*.py")):
            if not path.name.startswith("_"):
                found[path.stem] = Candidate(path.stem, f"plugins_dir {path}", None, _file_loader(path))
    for name, plugin in (extra or {}).items():
        found[name] = Candidate(name, "registered in code", None, lambda plugin=plugin: plugin)
    return found


def _file_loader(path: Path) -> Callable[[], Any]:
    def load() -> Any:
        module_name = f"wechatbot_plugins_dir.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module

    return load


def select(wanted: Iterable[str], disabled: Iterable[str], available: Iterable[str]) -> list[str]:
    """Expand ``*`` and drop disabled plugins: the names to load, in call order.

    ``*`` stands for every available plugin not named elsewhere in the list,
    alphabetically. A name that is not installed is an error.
    """
    wanted, disabled, available = list(wanted), set(disabled), set(available)
    for name in wanted:
        if name != "*" and name not in available and name not in disabled:
            known = ", ".join(sorted(available)) or "none"
            raise PluginLoadError(
                f"plugin {name!r} is listed in [wechatbot] plugins but not installed (installed: {known}); "
                f"install it or remove it from the list"
            )
    named = {n for n in wanted if n != "*"}
    order: list[str] = []
    for name in wanted:
        names = sorted(available - named) if name == "*" else [name]
        order.extend(n for n in names if n not in disabled and n not in order)
    return order


def load(candidates: Mapping[str, Candidate], names: Iterable[str], cache: dict[str, LoadedPlugin] | None = None) -> list[LoadedPlugin]:
    """Import the named plugins, raising PluginLoadError naming a broken one."""
    cache = {} if cache is None else cache
    loaded = []
    for name in names:
        if name not in cache:
            candidate = candidates[name]
            try:
                plugin = candidate.load()
            except Exception as exc:
                raise PluginLoadError(
                    f"cannot load plugin {name!r} ({candidate.source}): {type(exc).__name__}: {exc}; "
                    + _how_to_disable(name)
                ) from exc
            cache[name] = LoadedPlugin(name, candidate.source, candidate.version, plugin, candidate.dist)
        loaded.append(cache[name])
    return loaded


def plugin_manager(plugins: list[LoadedPlugin]) -> pluggy.PluginManager:
    """A plugin manager whose call order is the order of ``plugins``.

    pluggy calls the last registered implementation first, so they are
    registered in reverse; ``tryfirst``/``trylast`` still sort before that.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for loaded in reversed(plugins):
        try:
            pm.register(loaded.plugin, name=loaded.name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginLoadError(f"plugin {loaded.name!r} ({loaded.source}) is invalid: {exc}; " + _how_to_disable(loaded.name)) from exc
    return pm


def call_order(pm: pluggy.PluginManager, hook_name: str) -> list[Any]:
    """The implementations of a hook in the order pluggy would call them."""
    return [impl for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()) if not impl.hookwrapper and not impl.wrapper]


def inline_prefix(chain: list[Any], plugins: list[LoadedPlugin]) -> tuple[list[Any], list[Any]]:
    """Split a call chain into its leading inline-safe implementations and the rest.

    A plugin declares itself inline-safe with ``wechatbot_inline = True`` (its
    hooks never block: no network, disk or sleep); the host then calls it on
    the request thread instead of handing the callback to a worker thread.
    """
    inline = {p.name for p in plugins if getattr(p.plugin, "wechatbot_inline", False) is True}
    split = 0
    while split < len(chain) and chain[split].plugin_name in inline:
        split += 1
    return chain[:split], chain[split:]
