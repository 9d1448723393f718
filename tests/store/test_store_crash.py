"""kill -9 at random moments: the store opens, shows only complete samples, and resumes exactly.

Children are forked from the test process (which has torch and the model imported already), so
each kill costs a fraction of a second instead of a fresh interpreter's imports.
"""

from __future__ import annotations

import os
import signal
import time

import store_helpers as H
from crash_helpers import KILL_RNG, fork, kill_after

from explorer.store import Store, StoreWriter


def _wait(pid: int, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("child hung")
        time.sleep(0.01)


def test_writer_survives_many_kills(tmp_path):
    """Dense kills on the writer alone (no model): creation, mid-batch, mid-flush, mid-commit."""
    lay = H.layout(n=160, steps=3)
    path = tmp_path / "s.h5"
    meta = {"model_hash": "synthetic", "guidance": 3.0, "batch_size": 4}

    def work():
        w = StoreWriter.resume(path, lay, meta) if path.exists() else H.create(path, lay)
        with w:
            while w.n_complete < lay.n_samples:
                H.write_batch(w, 4)

    # Kill delays scale with how long an uninterrupted write takes on this machine: fixed delays
    # were all longer than the whole write on a fast CI box, so no kill landed mid-run.
    began = time.perf_counter()
    reference = H.write_store(tmp_path / "ref.h5", lay)
    whole = time.perf_counter() - began
    delays = [whole / 2] + [KILL_RNG.uniform(0, whole / 3) for _ in range(9)]
    history = []
    for delay in delays:
        outcome = kill_after(fork(work), delay)
        n = None
        if path.exists():
            with Store.open(path) as store:
                n = store.n_samples
                assert n % 4 == 0, history
                # The last batches committed are the ones a kill could have hurt.
                H.check_synthetic(store, range(max(0, n - 8), n))
        history.append((round(delay, 3), outcome, n))
    assert _wait(fork(work)) == 0, history
    print(f"whole write {whole:.3f} s; kills (delay s, outcome, complete samples):", history)
    H.assert_same_files(path, reference)
    assert any(o == "killed" and n for _, o, n in history), history  # some kill landed mid-run


def test_collect_killed_then_resumed_equals_uninterrupted(
    tiny_model_dir, reference_store, tmp_path
):
    """The real `explorer collect` on the tiny model, SIGKILLed at random points, then resumed."""
    from explorer.cli import main

    out = tmp_path / "store.h5"
    n, batch = H.REFERENCE["n"], H.REFERENCE["batch_size"]
    args = H.collect_args(tiny_model_dir, out, "--resume")

    def work(args=args):
        import torch

        torch.set_num_threads(1)  # as the reference; also what makes OpenMP safe after fork
        return main(args)

    # Kill delays scale with how long an uninterrupted collection takes on this machine, split
    # into loading (until the store file appears) and writing: the writing is a fraction of a
    # second here, and a delay drawn over the whole run mostly lands in the loading.
    timed = tmp_path / "timed.h5"
    began = time.monotonic()
    pid = fork(lambda: work(H.collect_args(tiny_model_dir, timed)))
    while not timed.exists() and not os.waitpid(pid, os.WNOHANG)[0]:
        time.sleep(0.002)
    load = time.monotonic() - began
    assert _wait(pid) == 0
    write = time.monotonic() - began - load
    reference = Store.open(reference_store)
    history = []
    done = 0
    # First while the model loads or the store is being created; then at random points of what
    # is left to write, until a kill has landed between two committed batches (or 8 tries;
    # a run that finishes first is started over).
    for attempt in range(8):
        if attempt == 0:
            delay = KILL_RNG.uniform(0.0, load)
        else:
            delay = load + KILL_RNG.uniform(0.1, 0.7) * write * (n - done) / n
        before = done
        outcome = kill_after(fork(work), delay)
        if out.exists():
            with Store.open(out) as store:
                done = store.n_samples
                assert done % batch == 0 or done == n
                H.assert_same_samples(store, reference, done)
        history.append((round(delay, 2), outcome, before, done))
        if any(o == "killed" and b < d < n for _, o, b, d in history):
            break
        if done == n:  # this run finished before its kill: start over
            out.unlink()
            done = 0
    # Some kill landed after this run had committed a batch and before it finished.
    assert any(o == "killed" and b < d < n for _, o, b, d in history), (load, write, history)
    assert _wait(fork(work)) == 0, history
    print(f"load {load:.2f} s, write {write:.2f} s; kills (delay s, outcome, complete before, after):", history)
    reference.close()
    H.assert_same_files(out, reference_store)
    assert not (tmp_path / "store.h5.tmp").exists()
