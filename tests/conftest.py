"""Shared fixtures: a random-weight pipeline of the bundled architecture, built once per session.

Random weights are enough to test loading, hooks, the store and the SAE plumbing; tests that
need a model that actually draws shapes use the bundled one (resources/mini-sd-shapes).
"""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Two cores in CI: at most two threads per torch op keeps the suite's timing predictable.
# OMP_NUM_THREADS, when set, decides (the suite is checked under 1 and 2: no test may depend on
# the count; those comparing bit for bit pin it themselves, store_helpers.torch_threads).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser):
    """The docs' screenshots come from the journeys (tests/ui/journeys/
    test_docs_screenshots_journey.py): with --screenshots they are written there."""
    parser.addoption("--screenshots", metavar="DIR", default=None,
                     help="write the docs' screenshots into DIR (1280x800 ones in DIR/1280x800)")
    parser.addoption("--screenshot-workspace", metavar="WORKSPACE", default=None,
                     help="the workspace the screenshots show (default: the demo workspace "
                     "of the data folder)")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from explorer.shapes.model import random_pipeline

    folder = random_pipeline(tmp_path_factory.mktemp("tiny") / "tiny-sd", channels=(32, 64),
                             steps=4, guidance=3.0)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from explorer.engine import load_model

    return load_model(tiny_model_dir, device="cpu")


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    """Fail any test that leaves a Python thread running (Qt threads are checked in tests/ui)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.daemon
    ]
    for t in leaked:
        t.join(timeout=5)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"test left threads running: {leaked}"


@pytest.fixture(scope="session")
def tiny_workspace(tiny_model_dir, tmp_path_factory):
    """A complete workspace (store, per-step SAEs of two blocks, indexes, report) built by the
    real demo pipeline on the random-weight model, small enough for a few seconds."""
    from explorer.analysis.demo import DemoConfig, build_demo

    cfg = DemoConfig(
        model=str(tiny_model_dir), n_prompts=8, collect_batch=8,
        blocks=("mid_block.attentions.0", "up_blocks.1.attentions.0"),
        per_step_t=(1.0, 0.0), expansion=2, k=4, epochs=2, shared_epochs=1, batch_size=64,
        top_n=4, dead_tokens=1000, shared_mid_block=False,
    )
    return build_demo(tmp_path_factory.mktemp("ws") / "tiny-ws", config=cfg)


_EXIT_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process once pytest is done, without the interpreter's own finalization.

    After the whole UI suite (not after any one file) the final garbage collection at
    interpreter exit aborts inside PySide6 ("bool_dealloc: deallocating True or False", a
    refcount error in the C extension while Qt wrappers are torn down in arbitrary order). Every
    test and pytest's summary have run by now; skipping finalization only skips that teardown.
    """
    if "status" not in _EXIT_STATUS or "PySide6" not in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS["status"])
