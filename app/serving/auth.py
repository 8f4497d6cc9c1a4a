"""The HTTP token (``RIVERBED_HTTP_TOKEN``) of /predict and the model export."""

from __future__ import annotations

import hmac
from typing import Any

__all__ = ["authorized"]


def authorized(request: Any, token: str) -> bool:
    """True when no token is set, or the request's ``Authorization: Bearer`` matches it
    (compared in constant time, so the time taken says nothing about the token).

    Examples
    --------
    >>> class R:
    ...     headers = {"Authorization": "Bearer s3cret"}
    >>> authorized(R(), ""), authorized(R(), "s3cret"), authorized(R(), "other")
    (True, True, False)

    """
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
