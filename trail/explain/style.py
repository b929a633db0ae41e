"""What the claim checker does not judge: a text that says the same thing twice.

Constrained samples can loop ("The forecast points to a similar level next window, and the forecast points to a
similar level next window."; "It sits below its long-term average of 10. It sits below its long-term average of
10."). Every claim in such a text verifies, so :func:`trail.explain.check` passes it; the worker does not publish
it (``serving/explanations.py``) and tries the next candidate.
"""

from __future__ import annotations

import re

__all__ = ["repeated_clause"]

_CLAUSE_BREAK = re.compile(r"[.;,!?]+(?:\s+|$)|\s+and\s+", re.IGNORECASE)
MIN_CLAUSE_WORDS = 3  # "it is", "up 5%": short clauses may repeat in a good text


def repeated_clause(text: str) -> str | None:
    """The first clause of ``text`` (split at ``.;,!?`` and "and") that an earlier clause already said, word for
    word (case and spacing aside); None when none repeats.

    >>> repeated_clause("It sits below its long-term average of 10. It sits below its long-term average of 10.")
    'it sits below its long-term average of 10'
    >>> repeated_clause("Up 12% from 49 to 55 interactions. It ranks #4, and it is expected to hold steady.") is None
    True
    """
    seen: set[str] = set()
    for clause in _CLAUSE_BREAK.split(text):
        words = " ".join(clause.lower().split())
        if len(words.split()) < MIN_CLAUSE_WORDS:
            continue
        if words in seen:
            return words
        seen.add(words)
    return None
