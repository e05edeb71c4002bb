"""Named components with typed configs: the one registry behind methods and attacks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from labelleak.errors import LabelleakError, unknown_choice


class ComponentConfig(BaseModel):
    """Base of a method's or an attack's settings: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fields added after results were cached, each with the value that reproduces what was
    #: computed before it existed: a field at that value stays out of the cache key, so those
    #: results keep their keys (even if the field's default changes later). A subclass names its
    #: own; those of its bases count too.
    added_later: ClassVar[Mapping[str, Any]] = {}

    def key_params(self) -> dict[str, Any]:
        """The settings that determine a result, for its cache key."""
        params = self.model_dump()
        for cls in type(self).__mro__:
            for name, before in vars(cls).get("added_later", {}).items():
                if name in params and params[name] == before:
                    del params[name]
        return params


class Configurable(Protocol):
    name: str
    Config: type[BaseModel]


C = TypeVar("C", bound=Configurable)


def first_error(error: ValidationError) -> str:
    """The first problem of a pydantic validation error as ``where: what``, for one-line errors."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


class Registry(dict[str, type[C]], Generic[C]):
    """A ``name -> class`` mapping whose classes carry a pydantic ``Config``.

    ``kind`` names the component in error messages ("unlearning method", "attack").
    """

    def __init__(self, kind: str, discover: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        #: Called with a name not (yet) registered, to register it from outside the package
        #: (plugins) before the name counts as unknown.
        self.discover = discover

    def register(self, name: str) -> Callable[[type[C]], type[C]]:
        """Class decorator adding a class under ``name`` (and setting its ``name``)."""

        def decorate(cls: type[C]) -> type[C]:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name
            self[name] = cls
            return cls

        return decorate

    def get_class(self, name: str) -> type[C]:
        """The class registered as ``name``; an unknown name lists the valid ones."""
        if name not in self and self.discover is not None:
            self.discover(name)
        if name not in self:
            raise unknown_choice(self.kind, name, self)
        return self[name]

    def make_config(self, name: str, params: dict[str, Any] | None) -> Any:
        """Validate ``params`` against ``name``'s ``Config``, raising one line on error."""
        cls = self.get_class(name)
        try:
            return cls.Config(**(params or {}))
        except ValidationError as error:
            raise LabelleakError(
                f"bad parameter for {self.kind} {name!r}: {first_error(error)}; "
                f"valid parameters: {', '.join(cls.Config.model_fields) or 'none'}"
            ) from None
