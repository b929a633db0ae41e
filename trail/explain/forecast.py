"""The forecast and the one steady band every direction is judged by.

Tolerances. One steady band (:func:`forecast_direction`): ``after`` is a rise above ``before * (1 +
STEADY_RELATIVE_BAND) + STEADY_ABSOLUTE_BAND``, a fall below ``before * (1 - STEADY_RELATIVE_BAND) -
STEADY_ABSOLUTE_BAND``, else steady.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DIRECTIONS", "FALL", "RISE", "STEADY", "STEADY_ABSOLUTE_BAND", "STEADY_RELATIVE_BAND", "Forecast",
           "band_direction", "forecast_direction", "sign_direction"]

RISE, FALL, STEADY = "rise", "fall", "steady"
DIRECTIONS = frozenset({RISE, FALL, STEADY})
STEADY_RELATIVE_BAND = 0.10
STEADY_ABSOLUTE_BAND = 0.5


@dataclass(frozen=True)
class Forecast:
    """The model's prediction of the item's next-window count (``score``: its trending score, if any)."""

    predicted_count: float
    score: float | None = None



def band_direction(before: float, after: float) -> str:
    """rise above ``before * 1.10 + 0.5``, fall below ``before * 0.90 - 0.5``, else steady.

    >>> band_direction(100, 105), band_direction(100, 111), band_direction(10, 8.4)
    ('steady', 'rise', 'fall')
    """
    if after > before * (1 + STEADY_RELATIVE_BAND) + STEADY_ABSOLUTE_BAND:
        return RISE
    return FALL if after < before * (1 - STEADY_RELATIVE_BAND) - STEADY_ABSOLUTE_BAND else STEADY


def forecast_direction(current_count: float, predicted_count: float) -> str:
    """rise if predicted > current * 1.10 + 0.5, fall if predicted < current * 0.90 - 0.5, else steady (the
    STEADY_RELATIVE_BAND / STEADY_ABSOLUTE_BAND band)."""
    return band_direction(current_count, predicted_count)


def sign_direction(before: float, after: float) -> str:
    return RISE if after > before else FALL if after < before else STEADY
