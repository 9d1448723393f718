"""The feature page's small numpy helpers against the obvious loops they replace."""

import numpy as np

from explorer.analysis import schema as X
from explorer.ui.feature_page import log_histogram_view, one_per_sample


def test_one_per_sample_keeps_the_first_of_each_image_and_step_like_the_obvious_loop():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        samples = rng.integers(0, 6, n)
        steps = rng.integers(0, 4, n)
        seen, slow = set(), []
        for i, key in enumerate(zip(samples.tolist(), steps.tolist(), strict=True)):
            if key not in seen:
                seen.add(key)
                slow.append(i)
        assert one_per_sample(samples, steps).tolist() == slow


def test_log_histogram_view_spans_the_bins_with_data():
    edges = X.HIST_EDGES
    counts = np.zeros(len(edges) - 1)
    assert log_histogram_view(edges, counts) is None
    counts[[30, 33, 41]] = [5, 2, 7]
    e, c, (lo, hi) = log_histogram_view(edges, counts)
    assert len(e) == len(c) + 1 and c.tolist() == counts[29:43].tolist()
    assert lo == np.log10(edges[29]) and hi == np.log10(edges[43])
    counts[:] = 0
    counts[[0, len(counts) - 1]] = 1  # data in the first and last bins: no bin outside them
    e, c, _ = log_histogram_view(edges, counts)
    assert len(c) == len(counts) and e[0] == edges[0] and e[-1] == edges[-1]
