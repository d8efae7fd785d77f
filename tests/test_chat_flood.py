"""The chat server's flood bucket: a burst of at most *burst* lines, *rate* per second after.

Kept apart from test_chat.py, and importing nothing but ``TokenBucket`` from
``demos.chat.session``, so that reorganising the chat demo moves one import.
(Behaviour 5 of issue 19; the planted bug is in docs/TESTING.md.)
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from demos.chat.session import TokenBucket


def burst_at(bucket: TokenBucket, now: float) -> int:
    """How many lines the bucket lets through at one instant (bounded: a broken bucket may not stop)."""
    taken = 0
    while taken < 10_000 and bucket.take(now):
        taken += 1
    return taken


def test_after_an_idle_hour_the_bucket_holds_only_its_burst():
    bucket = TokenBucket(rate=2.0, burst=5, now=0.0)
    assert burst_at(bucket, 0.0) == 5
    assert burst_at(bucket, 3600.0) == 5  # an hour's tokens are not saved up
    assert burst_at(bucket, 3600.5) == 1  # then the rate: 2 per second


@given(rate=st.floats(min_value=0.1, max_value=100.0), burst=st.integers(min_value=1, max_value=20),
       gaps=st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=1, max_size=20))
def test_no_instant_lets_more_than_the_burst_through(rate, burst, gaps):
    bucket, now = TokenBucket(rate=rate, burst=burst, now=0.0), 0.0
    for gap in gaps:
        now += gap
        assert burst_at(bucket, now) <= burst
