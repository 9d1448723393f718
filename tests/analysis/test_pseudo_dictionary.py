"""The pseudo-mask dictionary kept beside an index: read back as written, and only for the very
index build it was made from."""

import numpy as np

from explorer.analysis.dictionary import DictionaryBuilder
from explorer.analysis.pseudo_dictionary import (
    PSEUDO_DICTIONARY_FILE,
    read_pseudo_dictionary,
    save_for_indexes,
    write_pseudo_dictionary,
)
from explorer.analysis.truth import PSEUDO, ObjectTruth, SampleTruth


def _table(n_features=6):
    builder = DictionaryBuilder(n_features)
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, :2, :2] = 1.0  # feature 1: the top-left quadrant
    maps[1, 2:, 2:] = 1.0  # feature 4: the bottom-right one
    mask = np.zeros((16, 16), bool)
    mask[:8, :8] = True
    for _ in range(3):
        truth = SampleTruth([ObjectTruth([("word", "dog")], mask)], shape=(16, 16))
        builder.add(np.array([1, 4]), maps, truth)
    return builder.build()


def test_written_and_read_back_whole_for_its_own_index_only(tmp_path):
    table = _table()
    index = tmp_path / "index.h5"
    path = write_pseudo_dictionary(index, table, "identity-1", PSEUDO)
    assert path == tmp_path / PSEUDO_DICTIONARY_FILE
    assert [p.name for p in tmp_path.iterdir()] == [PSEUDO_DICTIONARY_FILE]  # no temp left
    back, truth = read_pseudo_dictionary(index, "identity-1", table.n_features)
    assert truth == PSEUDO
    assert back.entry(1) == table.entry(1) and back.entry(1)[0].label == "dog"
    assert back.entry(4) == [] and back.labels == ["dog"] and back.kinds == ["word"]
    np.testing.assert_array_equal(back.n_matches, table.n_matches)
    assert back.n_samples == table.n_samples == 3
    # A rebuilt index (other codes) or another SAE's width: not this index's dictionary.
    assert read_pseudo_dictionary(index, "identity-2", table.n_features) is None
    assert read_pseudo_dictionary(index, "identity-1", table.n_features + 1) is None
    assert read_pseudo_dictionary(tmp_path / "other" / "index.h5", "identity-1", 6) is None
    (tmp_path / PSEUDO_DICTIONARY_FILE).write_bytes(b"not hdf5")
    assert read_pseudo_dictionary(index, "identity-1", table.n_features) is None


def test_a_dictionary_that_cannot_be_written_is_reported_not_raised(tmp_path):
    class Ix:
        path = tmp_path / "index.h5"
        identity = "x"

    # A folder where the file goes: the rename fails, as on a read-only or full disk.
    (tmp_path / PSEUDO_DICTIONARY_FILE / "keep").mkdir(parents=True)
    failed = save_for_indexes({"b/t0.50": Ix}, {"b/t0.50": _table()}, PSEUDO)
    assert list(failed) == ["b/t0.50"] and PSEUDO_DICTIONARY_FILE in failed["b/t0.50"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [PSEUDO_DICTIONARY_FILE]  # no temp left
