"""Metrics for generated natural-language explanations, in plain Python.

Every metric works on the tokens produced by :func:`tokenize`, so all of them see the same words and numbers.

- :func:`tokenize`: lowercase, then words and numbers (a number keeps its sign, decimals and percent sign).
- :func:`corpus_bleu4`: corpus-level BLEU-4 (Papineni et al., 2002), several references per hypothesis allowed.
- :func:`rouge_l`, :func:`mean_rouge_l`: ROUGE-L F1 from the longest common subsequence of tokens (Lin, 2004).
- :func:`distinct_n`: the share of distinct n-grams among all n-grams of a set of texts (Li et al., 2016).

Conventions for inputs: ``references`` is always one *sequence of strings* per hypothesis (even when there is a
single reference), in the same order as ``hypotheses``. Mismatched lengths, an empty list of hypotheses where an
average would be undefined, or a hypothesis without references raise :class:`ValueError`; passing a bare string
where a sequence of references is expected raises :class:`TypeError`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

__all__ = [
    "corpus_bleu4",
    "distinct_n",
    "mean_rouge_l",
    "ngrams",
    "rouge_l",
    "tokenize",
]

# A number: an optional sign (only where it does not follow a letter or digit, so "x-3" gives "x", "3" and
# "5-10" gives "5", "10"), digits with optional thousands groups ("1,000") and an optional decimal part ("12.5"),
# then an optional percent sign; it must not run straight into a letter or digit ("12th" is a word).
_NUMBER = r"(?:(?<![^\W_])[+-])?\d+(?:,\d{3})*(?:\.\d+)?%?(?![^\W_])"
# A word: a run of letters and digits (any script), with internal apostrophes kept ("don't", "o'neill").
_WORD = r"[^\W_]+(?:'[^\W_]+)*"
_TOKEN = re.compile(f"{_NUMBER}|{_WORD}")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2212": "-", "\u2013": "-"})


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercase word and number tokens; punctuation and whitespace are dropped.

    Exact definition, applied to ``text.lower()`` after mapping curly apostrophes to ``'`` and the Unicode
    minus sign and en dash to ``-``, scanning left to right and taking the first rule that matches:

    1. A *number*: an optional ``+`` or ``-`` sign (only when the sign is not preceded by a letter or digit),
       digits, optional thousands groups ``,ddd``, an optional decimal part ``.d+``, an optional ``%`` — and not
       followed directly by a letter or digit. So ``"12.5"``, ``"+8"``, ``"-3"``, ``"40%"`` and ``"1,000"`` are
       single tokens.
    2. A *word*: a maximal run of letters and digits (``str.isalnum`` characters, any script), possibly joined
       by internal apostrophes (``"don't"``). Alphanumeric mixes such as ``"12th"`` or ``"h100"`` are words.

    Everything else (punctuation, brackets, underscores, a sentence-final ``.``, a hyphen inside a word such
    as ``"real-time"``) separates tokens and is dropped.

    >>> tokenize("Sales rose 40% (+8) to 55.5.")
    ['sales', 'rose', '40%', '+8', 'to', '55.5']
    >>> tokenize("Real-time views fell -3, from 1,000 to 997; it's the 12th day.")
    ['real', 'time', 'views', 'fell', '-3', 'from', '1,000', 'to', '997', "it's", 'the', '12th', 'day']
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower().translate(_APOSTROPHES))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of ``tokens``, in order (empty when there are fewer than ``n`` tokens).

    >>> ngrams(["a", "b", "c"], 2)
    [('a', 'b'), ('b', 'c')]
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _check_references(hypotheses: Sequence[str], references: Sequence[Sequence[str]], metric: str) -> None:
    if isinstance(hypotheses, str):
        raise TypeError(f"{metric}: hypotheses must be a sequence of strings, not a single string")
    if isinstance(references, str):
        raise TypeError(f"{metric}: references must be a sequence (one per hypothesis) of sequences of strings")
    if len(hypotheses) != len(references):
        raise ValueError(f"{metric}: got {len(hypotheses)} hypotheses but {len(references)} reference sets; "
                         "there must be exactly one set of references per hypothesis")
    if len(hypotheses) == 0:
        raise ValueError(f"{metric} is undefined for an empty list of hypotheses")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise TypeError(f"{metric}: references[{i}] is a single string; wrap it in a list, "
                            "each hypothesis takes a sequence of reference strings")
        if len(refs) == 0:
            raise ValueError(f"{metric}: hypothesis {i} has no references")


def corpus_bleu4(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus-level BLEU-4 in [0, 1] (Papineni et al., 2002), on :func:`tokenize` tokens.

    Exact definition. For each order n = 1..4 and each hypothesis h with references R(h):

    - ``matches_n(h) = sum over distinct n-grams g of h of min(count_h(g), max over r in R(h) of count_r(g))``
      (clipped counts), and ``total_n(h)`` = number of n-grams of h.
    - ``p_n = sum_h matches_n(h) / sum_h total_n(h)`` (summed over the corpus before dividing).

    ``c`` is the total hypothesis length in tokens and ``r`` the sum over hypotheses of the length of the
    reference closest in length to that hypothesis (on a tie, the shorter one). The brevity penalty is
    ``BP = 1`` if ``c > r`` else ``exp(1 - r / c)``, and ``BLEU = BP * exp(sum_n log(p_n) / 4)``.

    No smoothing: if any ``p_n`` is 0, or undefined because no hypothesis has ``n`` tokens, the result is 0.0.
    This equals NLTK's ``corpus_bleu`` with default weights and no smoothing function, and sacreBLEU's
    ``corpus_bleu(..., smooth_method="none")`` (divided by 100) when both are given the same tokens.

    Raises ``ValueError`` when the lengths of ``hypotheses`` and ``references`` differ, when there are no
    hypotheses, or when a hypothesis has no references.

    >>> corpus_bleu4(["the cat sat on the mat"], [["the cat sat on the mat"]])
    1.0
    >>> corpus_bleu4(["the cat sat on the mat"], [["the cat is on the mat"]])  # no 4-gram in common
    0.0
    """
    _check_references(hypotheses, references, "corpus_bleu4")
    max_n = 4
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = 0
    ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        hyp_tokens = tokenize(hyp)
        ref_tokens = [tokenize(ref) for ref in refs]
        hyp_len += len(hyp_tokens)
        ref_len += min((len(t) for t in ref_tokens), key=lambda length: (abs(length - len(hyp_tokens)), length))
        for n in range(1, max_n + 1):
            hyp_counts = Counter(ngrams(hyp_tokens, n))
            max_ref_counts: Counter[tuple[str, ...]] = Counter()
            for tokens in ref_tokens:
                max_ref_counts |= Counter(ngrams(tokens, n))  # | keeps the maximum count of each n-gram
            matches[n - 1] += sum(min(count, max_ref_counts[g]) for g, count in hyp_counts.items())
            totals[n - 1] += sum(hyp_counts.values())
    if min(matches) == 0:  # also covers totals == 0, since matches <= totals
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    brevity_penalty = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return min(1.0, brevity_penalty * math.exp(log_precision))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (dynamic programming, O(len(a) * len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) of one hypothesis against one reference, on :func:`tokenize` tokens.

    Exact definition: with ``L`` = length of the longest common subsequence of the two token lists,
    ``P = L / len(hypothesis tokens)``, ``R = L / len(reference tokens)`` and ``F1 = 2 * P * R / (P + R)``.
    The result is 0.0 when ``L`` is 0, including when either text has no tokens (as in Google's
    ``rouge-score``). No stemming and no stop-word removal.

    >>> rouge_l("the cat sat on the mat", "the cat is on the mat")  # LCS "the cat on the mat"
    0.8333333333333334
    """
    hyp_tokens = tokenize(hypothesis)
    ref_tokens = tokenize(reference)
    if not hyp_tokens or not ref_tokens:
        return 0.0
    lcs = _lcs_length(hyp_tokens, ref_tokens)
    if lcs == 0:
        return 0.0
    precision = lcs / len(hyp_tokens)
    recall = lcs / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def mean_rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over hypotheses of the best :func:`rouge_l` F1 against any of that hypothesis's references.

    Exact definition: ``(1 / N) * sum_i max over r in references[i] of rouge_l(hypotheses[i], r)``.

    Raises ``ValueError`` when the lengths differ, when there are no hypotheses, or when a hypothesis has no
    references.

    >>> mean_rouge_l(["a b c", "x y"], [["a b c", "a"], ["z"]])
    0.5
    """
    _check_references(hypotheses, references, "mean_rouge_l")
    return sum(max(rouge_l(hyp, ref) for ref in refs) for hyp, refs in zip(hypotheses, references)) / len(hypotheses)


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al., 2016): distinct n-grams divided by all n-grams, pooled over ``texts``.

    Exact definition: the n-grams of each text's :func:`tokenize` tokens (n-grams never span two texts) are
    pooled; the result is ``len(set(pool)) / len(pool)``, in (0, 1], or 0.0 when the pool is empty (no
    texts, or every text shorter than ``n`` tokens). Raises ``ValueError`` when ``n < 1``.

    >>> distinct_n(["a b a b", "a b"], n=2)  # bigrams: ab, ba, ab, ab -> 2 distinct of 4
    0.5
    """
    if n < 1:
        raise ValueError(f"distinct_n: n must be at least 1, got {n}")
    if isinstance(texts, str):
        raise TypeError("distinct_n: texts must be a sequence of strings, not a single string")
    pool = [g for text in texts for g in ngrams(tokenize(text), n)]
    if not pool:
        return 0.0
    return len(set(pool)) / len(pool)
