"""Named components with typed configs: the one registry behind methods and attacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from labelleak.errors import LabelleakError, unknown_choice


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

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

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
