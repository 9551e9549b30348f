"""Log-bucket histogram: error bound, merge, special keys, and Python/Postgres agreement."""

from __future__ import annotations

import math
import random

import pytest
from sqlalchemy import Engine, text

from monitoring_core import histogram as h

SEEDS = range(12)


def _exact(values: list[float], q: float) -> float:
    """The DDSketch rank definition on the sorted values: index floor(q * (n - 1))."""
    return sorted(values)[math.floor(q * (len(values) - 1))]


@pytest.mark.parametrize("seed", SEEDS)
def test_it_keeps_quantiles_within_one_percent_on_lognormal_data(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(rng.uniform(0, 8), rng.uniform(0.2, 2)) for _ in range(5000)]
    keys, counts = h.from_values(values)
    for q in (0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0):
        got = h.quantile(keys, counts, q)
        assert got == pytest.approx(_exact(values, q), rel=h.RELATIVE_ACCURACY)


@pytest.mark.parametrize("seed", SEEDS)
def test_it_merges_like_concatenation(seed: int) -> None:
    rng = random.Random(seed)
    parts = [[rng.choice([-1, 1]) * rng.expovariate(0.01) for _ in range(rng.randint(0, 300))]
             for _ in range(4)]  # fmt: skip
    merged = h.merge(*(h.from_values(p) for p in parts))
    assert merged == h.from_values([v for p in parts for v in p])


@pytest.mark.parametrize(
    ("value", "key"),
    [(0.0, 0), (1e-12, 0), (-1e-12, 0), (1.0, h.BIAS), (-1.0, -h.BIAS), (1.02, h.BIAS + 1)],
)
def test_it_gives_zero_and_negatives_their_own_keys(value: float, key: int) -> None:
    assert h.bucket_key(value) == key


@pytest.mark.parametrize("value", [1e-9 * 1.5, 0.003, 0.7, 1.0, 42.0, 1234.5, 9.9e15, 1e307])
def test_it_represents_every_value_within_the_bound(value: float) -> None:
    for v in (value, -value):
        assert h.bucket_value(h.bucket_key(v)) == pytest.approx(v, rel=h.RELATIVE_ACCURACY)


def test_it_orders_keys_like_values() -> None:
    values = sorted([-1e6, -3.0, -0.5, 0.0, 1e-3, 0.5, 2.0, 7e9])
    keys = [h.bucket_key(v) for v in values]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("keys", "counts", "q", "expected"),
    [
        ([], [], 0.5, None),
        ([h.BIAS], [0], 0.5, None),
        ([0], [3], 0.99, 0.0),
        (
            [h.bucket_key(10.0), h.bucket_key(-10.0)],
            [1, 1],
            0.0,
            h.bucket_value(h.bucket_key(-10.0)),
        ),
    ],
)
def test_it_handles_small_and_empty_histograms(
    keys: list[int], counts: list[int], q: float, expected: float | None
) -> None:
    assert h.quantile(keys, counts, q) == expected


def test_it_rejects_nan_and_quantiles_out_of_range() -> None:
    with pytest.raises(ValueError):
        h.bucket_key(float("nan"))
    with pytest.raises(ValueError):
        h.quantile([1], [1], 1.5)


def test_it_computes_the_same_keys_and_values_in_postgres(engine: Engine) -> None:
    rng = random.Random(5)
    values = [0.0, 1.0, -1.0, 5e-10, 1e300, 1.79e308] + [
        rng.lognormvariate(3, 3) for _ in range(500)
    ]
    values += [-v for v in values[5:50]]
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT v, {h.sql_bucket_key('v')} AS k FROM unnest(CAST(:vs AS float8[])) AS v"  # noqa: S608
            ),
            {"vs": values},
        ).all()
        keys = [k for _, k in rows]
        back = conn.execute(
            text(f"SELECT {h.sql_bucket_value('k')} FROM unnest(CAST(:ks AS int[])) AS k"),  # noqa: S608
            {"ks": keys},
        ).scalars()
        back_values = list(back)
    mismatched = [v for v, k in rows if abs(k - h.bucket_key(v)) > 1]
    assert mismatched == [] and sum(k != h.bucket_key(v) for v, k in rows) <= 2
    assert back_values == pytest.approx([h.bucket_value(k) for k in keys], rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_it_merges_groups_vectorised_like_one_merge_per_group(seed: int) -> None:
    rng = random.Random(seed)
    rows = [h.from_values([rng.lognormvariate(2, 1.5) for _ in range(rng.randint(0, 40))])
            for _ in range(30)]  # fmt: skip
    groups = [rng.randrange(6) for _ in rows]
    qs = (0.0, 0.5, 0.95, 1.0)
    got = h.grouped_quantiles(groups, [k for k, _ in rows], [c for _, c in rows], 7, qs)
    for g in range(7):
        keys, counts = h.merge(*(r for r, gid in zip(rows, groups, strict=True) if gid == g))
        expected = h.quantiles(keys, counts, qs)
        assert [None if math.isnan(v) else v for v in got[g]] == pytest.approx(expected)


def test_a_groups_quantile_does_not_depend_on_the_groups_before_it() -> None:
    """The rank q·(n − 1) = 4.95 of six buckets is the fifth; a group before it holding 2^50
    points used to make the float target 2^50 + 4.95 round to 2^50 + 5 (the sixth)."""
    keys = [h.bucket_key(float(v)) for v in (10, 20, 30, 40, 50, 60)]
    alone = h.grouped_quantiles([0] * 6, [[k] for k in keys], [[1]] * 6, 1, (0.99,))
    after = h.grouped_quantiles(
        [0, *[1] * 6], [[keys[0]], *[[k] for k in keys]], [[2**50], *[[1]] * 6], 2, (0.99,)
    )
    assert alone[0, 0] == after[1, 0] == h.quantile(keys, [1] * 6, 0.99) == h.bucket_value(keys[4])
