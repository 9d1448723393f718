"""The command line's progress bar: tqdm, never backwards, never past its total."""

import io
import re
import warnings

from explorer.analysis.progress import console_progress


def test_console_progress_never_runs_backwards_or_past_the_end():
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm's "clamping frac" warning would fail the test
        with console_progress(out, enabled=True) as bar:
            bar(0.5, "index: sample 4 of 8")
            bar(0.25, "evaluate: a stage that restarts its own fraction")
            bar(1.0000000000000002, "float sums can pass 1")
            bar(2.0, "the last message")
    text = out.getvalue()
    percents = [float(p) for p in re.findall(r"([\d.]+)%\|", text)]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert text.rstrip().endswith("the last message")
    assert not re.search(r"-\d", text)  # no negative count or ETA


def test_console_progress_stays_silent_off_a_terminal():
    out = io.StringIO()  # a pipe or a log file: no bar, so a one-line error stays one line
    with console_progress(out) as bar:
        bar(0.5, "half way")
    assert out.getvalue() == ""
