import math

import pytest

from vlsafe.evaluation.metrics import METRICS, aggregate, episode_metrics, format_table


def test_episode_metrics_by_hand():
    # 10 steps of 0.1 s; contact on steps 3-4 (one event at 6 m/s) and step 8 (a second at 2 m/s)
    speeds = [5, 5, 5, 6, 6, 4, 3, 3, 2, 2]
    coll = [0, 0, 0, 1, 1, 0, 0, 0, 1, 0]
    m = episode_metrics(rewards=[1.0] * 10, costs=coll, speeds=speeds, collisions=coll, dt=0.1, distance=50.0,
                        waypoints=12, arrived=False)
    assert (m.Return, m.Cost, m.WC, m.TD, m.AR, m.CR) == (10.0, 3.0, 12.0, 50.0, 0.0, 1.0)
    assert m.AS == pytest.approx(4.1)
    assert m.collisions == 2
    assert m.TCF == pytest.approx(2 / 1.0 * 100)  # per 100 s
    assert m.DCF == pytest.approx(2 / 50 * 1000)  # per km
    assert m.CS == pytest.approx(4.0)


def test_aggregate_pools_rates_and_clean_episode_has_nan_cs():
    clean = episode_metrics([2.0] * 20, [0] * 20, [5] * 20, [0] * 20, 0.1, 100.0, 25, True)
    assert math.isnan(clean.CS) and clean.CR == 0.0 and clean.TCF == 0.0
    crash = episode_metrics([1.0] * 10, [0] * 9 + [1], [8] * 10, [0] * 9 + [1], 0.1, 80.0, 10, False)
    row = aggregate([clean, crash])
    assert row["CR"] == 0.5 and row["AR"] == 0.5
    assert row["TCF"] == pytest.approx(1 / 3.0 * 100)
    assert row["DCF"] == pytest.approx(1 / 180 * 1000)
    assert row["CS"] == 8.0
    table = format_table({"x": row})
    assert all(name in table for name in METRICS)
