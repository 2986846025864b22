"""Client-chosen identifiers (member id = the shop's customer id, order id = its order id)."""

from typing import Annotated

from pydantic import StringConstraints

ClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@\-]+$")
]
