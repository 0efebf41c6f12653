"""The demo shop's product reviews: the table the demo's row-level quality checks act on.

Most reviews are fine; a few carry what each action exists for (flow `retail_reviews`): a rating outside
1-5 (quarantined, to be fixed and replayed), a blank body (dropped: noise), a missing title (warned:
written, recorded). No review lacks its product (the `fail` check guards that). Reviews are only ever
inserted, never updated. They draw from their own random stream, so adding them changed none of the
other tables' rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

DDL = """
CREATE TABLE reviews (
    review_id INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (product_id),
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    rating INTEGER NOT NULL,
    title VARCHAR(80),
    body TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX ix_reviews_updated_at ON reviews (updated_at);
"""
TITLES = ("Great value", "Does the job", "Not as pictured", "Love it", "Broke quickly", "Would buy again")
BODIES = (
    "Arrived quickly and works as described.",
    "Good quality for the price, the box was damaged though.",
    "Stopped working after two weeks; support replaced it.",
    "Exactly what I needed for the garden.",
    "Smaller than expected but well made.",
)
BLANK_BODIES = ("", " ", "\t")
BAD_RATINGS = (0, 6, 10, -1)


def review_rows(
    seed: int, first_id: int, count: int, products: Sequence[int], customers: Sequence[int], stamp: Callable[[int], str]
) -> list[tuple[object, ...]]:
    """`count` reviews numbered from `first_id`; `stamp(n)` is the n-th review's updated_at."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        roll = rng.random()
        rating = rng.choice(BAD_RATINGS) if roll < 0.04 else rng.randint(1, 5)
        body = rng.choice(BLANK_BODIES) if 0.04 <= roll < 0.09 else rng.choice(BODIES)
        title = None if rng.random() < 0.1 else rng.choice(TITLES)
        rows.append((first_id + n, rng.choice(products), rng.choice(customers), rating, title, body, stamp(n)))
    return rows
