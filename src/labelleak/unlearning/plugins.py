"""Unlearning methods from outside labelleak: entry points and ``module:Class`` names.

A method written in a user's own package becomes usable in grids in one of three ways:

* an entry point in the group ``labelleak.unlearning`` of that package's metadata, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."labelleak.unlearning"]
      gentle = "my_package.unlearning:GentleForget"

  then ``methods: [gentle]`` in a config (found when a name is not built in);
* a ``plugins`` mapping in the config, ``plugins: {gentle: "my_package.unlearning:GentleForget"}``,
  for a module that is importable but not installed as a package;
* the ``module:Class`` string itself as the method name, ``methods: ["my_package.unlearning:
  GentleForget"]`` (the results then name the method by that string).

The class subclasses :class:`~labelleak.unlearning.base.UnlearningMethod`, as a built-in method does
(a pydantic ``Config``, an ``unlearn(task)``). Models it makes are cached by its name, its config
and its ``version``: bump ``version`` when a code change alters its models.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from labelleak.errors import LabelleakError
from labelleak.unlearning.base import METHODS, UnlearningMethod

#: The entry-point group a package declares its unlearning methods in.
ENTRY_POINT_GROUP = "labelleak.unlearning"


def load_class(spec: str) -> type[UnlearningMethod]:
    """The :class:`UnlearningMethod` subclass that ``spec`` (``"module:Class"``) names."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise LabelleakError(
            f"plugin {spec!r} must be written 'module:Class', e.g. 'my_package.unlearning:Gentle'"
        )
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as error:
        raise LabelleakError(
            f"cannot import plugin module {module_name!r} ({error}); install its package or add "
            "its folder to PYTHONPATH"
        ) from None
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise LabelleakError(f"module {module_name!r} has no {attribute!r} (plugin {spec!r})")
    if not (isinstance(found, type) and issubclass(found, UnlearningMethod)):
        raise LabelleakError(
            f"plugin {spec!r} is not a subclass of labelleak.unlearning.UnlearningMethod"
        )
    if found.unlearn is UnlearningMethod.unlearn:
        raise LabelleakError(f"plugin {spec!r} does not implement unlearn(task)")
    return found


def register_plugin(name: str, spec: str) -> type[UnlearningMethod]:
    """Register the class ``spec`` names as method ``name``; idempotent for the same class."""
    cls = load_class(spec)
    existing = METHODS.get(name)
    if existing is cls:
        return cls
    if existing is not None:
        raise LabelleakError(
            f"unlearning method {name!r} exists already; give plugin {spec!r} another name"
        )
    # A class registers under one name: its `name` attribute is how results and caches call it.
    other = getattr(cls, "name", None)
    if isinstance(other, str) and METHODS.get(other) is cls:
        raise LabelleakError(f"plugin {spec!r} is registered as {other!r} already; use that name")
    METHODS.register(name)(cls)
    return cls


def register_plugins(plugins: dict[str, str]) -> None:
    """Register a config's ``plugins`` mapping (method name -> ``module:Class``)."""
    for name, spec in plugins.items():
        if ":" in name:
            raise LabelleakError(f"plugin name {name!r} must not contain ':'")
        register_plugin(name, spec)


def load_entry_points() -> list[str]:
    """Register every method declared in the ``labelleak.unlearning`` entry-point group that is
    not registered yet; returns the names found in the group."""
    found = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.append(entry.name)
        if METHODS.get(entry.name) is None:
            register_plugin(entry.name, entry.value)
    return found


def discover(name: str) -> None:
    """The method registry's hook for a name it does not know: a ``module:Class`` string is
    imported and registered under itself; any other name is looked up in the entry points."""
    if ":" in name:
        register_plugin(name, name)
    else:
        load_entry_points()
