"""Number types of request schemas: a JSON number, never a boolean or a string of digits.

Pydantic's lax mode takes ``true`` as 1 and ``"5"`` as 5; its strict mode refuses ``5.0``,
which JSON Schema counts as an integer. These types take what the OpenAPI document says. A
query string is validated in pydantic's strings mode, where a number's text is the number.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, ValidationInfo
from pydantic_core import PydanticCustomError


def json_number(value: object, info: ValidationInfo) -> object:
    """Refuse a boolean, and a string outside a query string, where a number is expected."""
    # A Literal of ints takes True as 1 even in strict mode (True == 1): it is checked here too.
    if isinstance(value, bool) or (isinstance(value, str) and info.mode in ("python", "json")):
        kind = type(value).__name__
        raise PydanticCustomError(
            "number_type", "Input should be a number, not a {kind}", {"kind": kind}
        )
    return value


JsonNumber = BeforeValidator(json_number)
Int = Annotated[int, JsonNumber]
Float = Annotated[float, JsonNumber]
# Not ``Int | None``: a Field's bounds on that union reach the document as pydantic's own
# names (``ge``), not JSON Schema's (``minimum``); on this type they are translated.
OptionalInt = Annotated[int | None, JsonNumber]
