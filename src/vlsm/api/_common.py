"""What the API functions share: value checks that name the command-line flag (one line, ``ValueError``),
the pixel limit a call sets and restores, and the trust a call opens for the checkpoints it reads."""
from __future__ import annotations

import contextlib
import numbers
from typing import Callable, Iterator, Optional


def check_threshold(value: float, flag: str = "--threshold") -> float:
    """A probability threshold: strictly between 0 and 1 (0 or 1 would make every mask full or empty)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{flag} must be between 0 and 1 (exclusive), got {value}")
    return float(value)


def check_at_least(flag: str, value: Optional[int], minimum: int = 1) -> Optional[int]:
    """A count (batch size, pixel limit, number of images...) of at least ``minimum``; None passes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{flag} must be a whole number of at least {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{flag} must be at least {minimum}, got {value}")
    return value


@contextlib.contextmanager
def call_scope(trust_checkpoint: bool = False) -> Iterator[None]:
    """The scope of one API call: checkpoints trusted when asked (an enclosing trust is kept), and Pillow's
    pixel limit (which ``max_pixels`` changes) restored afterwards, so a call changes nothing for the next."""
    from PIL import Image

    from vlsm.models.checkpoint import checkpoints_trusted

    limit = Image.MAX_IMAGE_PIXELS
    try:
        with checkpoints_trusted(trust_checkpoint):
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def quiet(_: str) -> None:
    """The default ``echo`` of the long-running calls: their progress goes to the ``vlsm`` logger."""
    import logging

    logging.getLogger("vlsm").info(_)


Echo = Callable[[str], None]

__all__ = ["Echo", "call_scope", "check_at_least", "check_threshold", "quiet"]
