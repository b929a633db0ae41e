"""The explanation-text metrics against values worked out by hand on tiny examples, plus a few properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.text_metrics import corpus_bleu4, distinct_n, mean_rouge_l, ngrams, rouge_l, tokenize

# --- tokenize -------------------------------------------------------------------------------------------------


def test_tokenize_keeps_numbers_signs_decimals_and_percentages():
    assert tokenize("Sales rose 40% (+8) to 55.5.") == ["sales", "rose", "40%", "+8", "to", "55.5"]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Views fell -3 today", ["views", "fell", "-3", "today"]),
        ("x-3 and 5-10", ["x", "3", "and", "5", "10"]),  # a hyphen after a letter or digit is not a sign
        ("from 1,000 to 2,500.75", ["from", "1,000", "to", "2,500.75"]),
        ("Real-time, it's the 12th day!", ["real", "time", "it's", "the", "12th", "day"]),
        ("It\u2019s down \u22124.5%", ["it's", "down", "-4.5%"]),  # curly apostrophe, Unicode minus
        ("snake_case...", ["snake", "case"]),
        ("  ?!  ", []),
        ("", []),
    ],
)
def test_tokenize_cases(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_rejects_non_strings():
    with pytest.raises(TypeError):
        tokenize(["not", "a", "string"])  # type: ignore[arg-type]


def test_ngrams():
    assert ngrams(["a", "b", "c"], 1) == [("a",), ("b",), ("c",)]
    assert ngrams(["a", "b", "c"], 3) == [("a", "b", "c")]
    assert ngrams(["a", "b"], 3) == []
    with pytest.raises(ValueError):
        ngrams(["a"], 0)


# --- corpus_bleu4 ---------------------------------------------------------------------------------------------


def test_bleu_identical_is_one():
    text = "The item's views rose 40% (+8) in the last hour."
    assert corpus_bleu4([text], [[text]]) == 1.0
    assert corpus_bleu4([text, "a b c d"], [[text], ["a b c d"]]) == 1.0


def test_bleu_zero_when_no_four_gram_matches():
    # hyp: the cat sat on the mat (6 tokens)   ref: the cat is on the mat (6 tokens)
    # p1: the, cat, on, the, mat match (the x2 clipped to the ref's 2), sat does not     -> 5/6
    # p2: "the cat", "on the", "the mat" match; "cat sat", "sat on" do not               -> 3/5
    # p3: "on the mat" matches; "the cat sat", "cat sat on", "sat on the" do not         -> 1/4
    # p4: "the cat sat on", "cat sat on the", "sat on the mat": none match               -> 0/3
    # No smoothing, so p4 = 0 gives BLEU = 0.
    assert corpus_bleu4(["the cat sat on the mat"], [["the cat is on the mat"]]) == 0.0


def test_bleu_hand_worked_with_brevity_penalty():
    # hyp: the quick brown fox jumped over the dog          (c = 8 tokens)
    # ref: the quick brown fox jumps over the lazy dog      (r = 9 tokens)
    # p1: the(2, ref has 2), quick, brown, fox, over, dog match; jumped does not          -> 7/8
    # p2: "the quick", "quick brown", "brown fox", "over the" match;
    #     "fox jumped", "jumped over", "the dog" do not                                    -> 4/7
    # p3: "the quick brown", "quick brown fox" match; the other 4 do not                   -> 2/6
    # p4: "the quick brown fox" matches; the other 4 do not                                -> 1/5
    # BP = exp(1 - r/c) = exp(1 - 9/8) = exp(-1/8), since c = 8 <= r = 9
    # BLEU = exp(-1/8) * (7/8 * 4/7 * 2/6 * 1/5) ** (1/4) = exp(-1/8) * (1/30) ** (1/4)
    #      ~= 0.882497 * 0.427287 ~= 0.377079
    expected = math.exp(-1 / 8) * (1 / 30) ** 0.25
    assert expected == pytest.approx(0.377079, abs=1e-6)
    got = corpus_bleu4(["the quick brown fox jumped over the dog"], [["the quick brown fox jumps over the lazy dog"]])
    assert got == pytest.approx(expected, rel=1e-12)


def test_bleu_clips_repeated_ngrams():
    # hyp: a a b c d (c = 5)   ref: a b c d (r = 4), so BP = 1 since c > r
    # p1: "a" appears twice but the ref has one -> a, b, c, d = 4/5
    # p2: ab, bc, cd match, aa does not = 3/4;  p3: abc, bcd = 2/3;  p4: abcd = 1/2
    # BLEU = (4/5 * 3/4 * 2/3 * 1/2) ** (1/4) = (1/5) ** (1/4)
    assert corpus_bleu4(["a a b c d"], [["a b c d"]]) == pytest.approx(0.2 ** 0.25, rel=1e-12)


def test_bleu_multiple_references_max_clip_and_closest_length():
    # hyp: a b c d e (c = 5); refs of lengths 7 and 4: the closest is 4, so r = 4 and BP = 1.
    # Clipping takes the max count over references: p1 = 4/5, p2 = 3/4, p3 = 2/3, p4 = 1/2 -> (1/5) ** (1/4)
    got = corpus_bleu4(["a b c d e"], [["a b c d x y z", "a b c d"]])
    assert got == pytest.approx(0.2 ** 0.25, rel=1e-12)
    # Each n-gram may match a different reference: "a b c" is only in the first, "c d e" only in the second.
    # hyp: a b c d e; ref1: a b c x (4), ref2: y c d e (4) -> p1 = 5/5, p2 = (ab, bc, cd, de) 4/4,
    # p3 = (abc, cde) 2/3, p4 = 0/2 -> 0
    assert corpus_bleu4(["a b c d e"], [["a b c x", "y c d e"]]) == 0.0


def test_bleu_reference_length_tie_takes_shorter():
    # hyp length 5; references of lengths 6 and 4 are equally close, so r = 4 (the shorter) and BP = 1.
    # All hyp n-grams occur in the first reference, so every p_n = 1 and BLEU = 1.
    # (Taking the longer one would give BP = exp(1 - 6/5).)
    assert corpus_bleu4(["a b c d e"], [["a b c d e f", "a b c d"]]) == 1.0
    assert corpus_bleu4(["a b c d e"], [["a b c d e f", "a b c d"]]) != pytest.approx(math.exp(-0.2))


def test_bleu_is_corpus_level_not_mean_of_sentences():
    # Sentence 1 is perfect; sentence 2 has no matching 4-gram, so its own sentence BLEU would be 0.
    # Counts are summed first: p1 = (4+3)/8, p2 = (3+2)/6, p3 = (2+1)/4, p4 = (1+0)/2; c = r = 8 -> BP = 1.
    # BLEU = (7/8 * 5/6 * 3/4 * 1/2) ** (1/4) = (105/384) ** (1/4) ~= 0.72315
    got = corpus_bleu4(["a b c d", "w x y z"], [["a b c d"], ["w x y q"]])
    assert got == pytest.approx((105 / 384) ** 0.25, rel=1e-12)


def test_bleu_zero_for_short_or_empty_hypotheses():
    # Fewer than 4 tokens everywhere: p4 is undefined (0/0) and BLEU is 0.
    assert corpus_bleu4(["a b c"], [["a b c"]]) == 0.0
    assert corpus_bleu4([""], [["a b c d"]]) == 0.0


def test_bleu_input_errors():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        corpus_bleu4(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="empty"):
        corpus_bleu4([], [])
    with pytest.raises(ValueError, match="no references"):
        corpus_bleu4(["a b c d"], [[]])
    with pytest.raises(TypeError, match="wrap it in a list"):
        corpus_bleu4(["a b c d"], ["a b c d"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        corpus_bleu4("a b c d", [["a b c d"]])  # type: ignore[arg-type]


# --- rouge_l / mean_rouge_l -----------------------------------------------------------------------------------


def test_rouge_l_identical_is_one():
    assert rouge_l("Sales rose 40% (+8) to 55.5.", "sales rose 40% +8 to 55.5") == 1.0


def test_rouge_l_known_lcs():
    # hyp: a b c d e f (6)   ref: a c x e f y z (7)   LCS = a c e f (4)
    # P = 4/6, R = 4/7, F1 = 2PR/(P+R) = 2*4/(6+7) = 8/13
    assert rouge_l("a b c d e f", "a c x e f y z") == pytest.approx(8 / 13, rel=1e-12)
    # the cat sat on the mat / the cat is on the mat: LCS = the cat on the mat (5), P = R = 5/6
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6, rel=1e-12)
    # Order matters: LCS of "b a" and "a b" is 1 -> P = R = 1/2
    assert rouge_l("b a", "a b") == pytest.approx(0.5)


def test_rouge_l_zero_cases():
    assert rouge_l("a b c", "x y z") == 0.0
    assert rouge_l("", "a b") == 0.0
    assert rouge_l("a b", "") == 0.0
    assert rouge_l("", "") == 0.0


def test_mean_rouge_l_takes_best_reference_then_averages():
    # hyp 1 vs refs: "a b c d e f"/"a c x e f y z" = 8/13, vs "x" = 0 -> best 8/13
    # hyp 2 identical to its second reference -> 1
    got = mean_rouge_l(["a b c d e f", "p q"], [["a c x e f y z", "x"], ["r", "p q"]])
    assert got == pytest.approx((8 / 13 + 1) / 2, rel=1e-12)


def test_mean_rouge_l_input_errors():
    with pytest.raises(ValueError, match="1 hypotheses but 2"):
        mean_rouge_l(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="empty"):
        mean_rouge_l([], [])
    with pytest.raises(ValueError, match="no references"):
        mean_rouge_l(["a"], [[]])
    with pytest.raises(TypeError):
        mean_rouge_l(["a"], ["a"])  # type: ignore[list-item]


# --- distinct_n -----------------------------------------------------------------------------------------------


def test_distinct_2_small_list():
    texts = ["the cat sat", "the cat ran", "a dog"]
    # bigrams: the cat, cat sat | the cat, cat ran | a dog -> 5 in total, 4 distinct
    assert distinct_n(texts, n=2) == pytest.approx(4 / 5)
    assert distinct_n(texts) == pytest.approx(4 / 5)  # n defaults to 2
    # unigrams: the cat sat the cat ran a dog -> 8 in total, 6 distinct
    assert distinct_n(texts, n=1) == pytest.approx(6 / 8)


def test_distinct_n_does_not_cross_texts_and_handles_empty():
    assert distinct_n(["a", "a"], n=2) == 0.0  # no bigram inside either text ("a a" would span both)
    assert distinct_n([], n=2) == 0.0
    assert distinct_n(["", "?!"], n=1) == 0.0
    assert distinct_n(["a a a a"], n=2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        distinct_n(["a b"], n=0)
    with pytest.raises(TypeError):
        distinct_n("a b c")  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------------------------

_words = st.lists(st.sampled_from(["a", "b", "c", "d", "the", "40%", "+8"]), min_size=0, max_size=12).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(hyp=_words, ref=_words)
def test_rouge_l_bounded_and_symmetric(hyp, ref):
    score = rouge_l(hyp, ref)
    assert 0.0 <= score <= 1.0
    assert score == pytest.approx(rouge_l(ref, hyp))
    if tokenize(hyp):
        assert rouge_l(hyp, hyp) == 1.0


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(_words, st.lists(_words, min_size=1, max_size=3)), min_size=1, max_size=4))
def test_bleu_bounded_and_identity(pairs):
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    assert 0.0 <= corpus_bleu4(hyps, refs) <= 1.0
    if any(len(tokenize(h)) >= 4 for h in hyps):
        assert corpus_bleu4(hyps, [[h] for h in hyps]) == pytest.approx(1.0)
