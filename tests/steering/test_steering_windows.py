import pytest

from explorer.errors import UserError
from explorer.steering import PRESETS, STAGES, parse_window, stage_of
from explorer.steering.regions import parse_rect


@pytest.mark.parametrize("n", [4, 10, 25, 50])
def test_presets_partition_the_schedule_first_step_early_last_final(n):
    seen = []
    for stage in STAGES:
        seen += PRESETS[stage].steps(n)
    assert sorted(seen) == list(range(n))  # every step in exactly one stage
    assert PRESETS["early"].contains(0, n)  # t = 1.0
    assert PRESETS["final"].contains(n - 1, n)  # t = 0.0


def test_preset_boundaries_at_25_steps():
    # t = 1 - i/24: early t ≥ 0.6 → i ≤ 9; middle 0.2 ≤ t < 0.6 → 10..19; final t < 0.2 → 20..24.
    assert PRESETS["early"].steps(25) == list(range(10))
    assert PRESETS["middle"].steps(25) == list(range(10, 20))
    assert PRESETS["final"].steps(25) == list(range(20, 25))
    assert [stage_of(t) for t in (1.0, 0.6, 0.59, 0.2, 0.19, 0.0)] == [
        "early",
        "early",
        "middle",
        "middle",
        "final",
        "final",
    ]


def test_parse_ranges():
    w = parse_window("0.6:1.0")
    assert (w.kind, w.lo, w.hi) == ("t", 0.6, 1.0)
    assert parse_window("1.0:0.6") == w  # either order
    assert parse_window("0:9").steps(25) == list(range(10))
    assert parse_window("5").steps(25) == [5]
    assert parse_window(":2").steps(25) == [0, 1, 2]
    assert parse_window("22:").steps(25) == [22, 23, 24]
    assert parse_window("EARLY") is PRESETS["early"]
    for bad in ("soon", "0.5:2.0", "a:b", "-1:3", "9:3"):
        with pytest.raises(UserError):
            parse_window(bad)


def test_parse_rect_fractions_and_pixels():
    r = parse_rect("0,0,0.5,0.5")
    assert (r.x0, r.y0, r.x1, r.y1) == (0, 0, 0.5, 0.5)
    assert parse_rect("32,0,64,32", image_size=64) == parse_rect("0.5,0,1,0.5")
    for bad in ("1,2,3", "0,0,nan,1", "0.5,0,0.2,1", "x,0,1,1"):
        with pytest.raises(UserError):
            parse_rect(bad, image_size=64)


def test_an_open_step_range_reads_to_the_end():
    from explorer.steering.windows import parse_window

    w = parse_window("3:")
    assert w.describe() == "steps 3–end" and w.steps(25) == list(range(3, 25))
    w.check(25)  # runs to the last step of any schedule: not "past" it
    assert parse_window("0:9").describe() == "steps 0–9"
