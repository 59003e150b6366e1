"""The integer rules under issue 16's defences, held to their plain twins: the exact dot product and
the copy test (consensus/useful_work/similarity.py), and the capped aggregation weights (training_types)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import given, settings, strategies as st

from consensus.useful_work.similarity import Candidate, exact_dot, find_copies, is_near_copy
from runtime.pallets import training

LIMIT = (1 << 31) - 1
vectors = st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(-LIMIT, LIMIT), min_size=n, max_size=n),
    st.lists(st.integers(-LIMIT, LIMIT), min_size=n, max_size=n)))


@settings(max_examples=300, deadline=None)
@given(vectors)
def test_the_exact_dot_product_is_the_plain_sum_of_products(pair):
    u, v = pair
    assert exact_dot(np.array(u, dtype=np.int64), np.array(v, dtype=np.int64)) == sum(a * b for a, b in zip(u, v))


@settings(max_examples=300, deadline=None)
@given(vectors, st.integers(0, 1_000_000))
def test_the_copy_test_is_the_sine_of_the_angle_in_exact_fractions(pair, distance_ppm):
    u, v = pair
    uu, vv, uv = sum(a * a for a in u), sum(b * b for b in v), sum(a * b for a, b in zip(u, v))
    if uu == 0 or vv == 0:
        expected = False
    else:  # sin^2 = 1 - cos^2, compared with (distance / 10**6)^2
        expected = uv > 0 and 1 - Fraction(uv * uv, uu * vv) <= Fraction(distance_ppm, 10**6) ** 2
    assert is_near_copy(np.array(u, dtype=np.int64), np.array(v, dtype=np.int64), distance_ppm) == expected


def test_the_earlier_reveal_wins_and_a_copy_of_a_copy_is_a_copy():
    rng = np.random.default_rng(0)
    original = rng.integers(-1000, 1000, size=50)
    first_copy = original.copy()
    first_copy[0] += 1  # one unit in the last place
    second_copy = first_copy.copy()
    second_copy[1] -= 1
    other = rng.integers(-1000, 1000, size=50)
    copies = find_copies([(b"a", original), (b"b", first_copy), (b"c", other), (b"d", second_copy), (b"e", None)],
                         [], 10_000)
    assert copies == {b"b": f"update 0x{b'a'.hex()}", b"d": f"update 0x{b'a'.hex()}"}
    assert find_copies([(b"a", original)], [Candidate("the model step of round 0", first_copy)], 10_000) == \
        {b"a": "the model step of round 0"}


def config(max_samples: int, max_share_ppm: int):
    from tests.helpers.training import task_config
    return task_config(rounds=3, max_samples=max_samples, max_share_ppm=max_share_ppm)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, (1 << 32) - 1), min_size=1, max_size=20), st.integers(1, 10**6),
       st.integers(1, 1_000_000))
def test_aggregation_weights_respect_the_cap_and_the_share(samples, cap, share_ppm):
    weights = training.aggregation_weights(config(cap, share_ppm), samples)
    assert len(weights) == len(samples)
    assert all(1 <= w <= min(s, cap) for w, s in zip(weights, samples))
    total = sum(weights)
    equal = len(set(weights)) == 1
    assert equal or all(w * 1_000_000 <= share_ppm * total for w in weights)
    # declaring more never lowers anyone else's weight relative to the declarer beyond the cap: the
    # weights are min(count, cap, T) with one threshold T for all
    threshold = max(weights)
    assert all(w == min(s, cap, threshold) for w, s in zip(weights, samples)) or equal
