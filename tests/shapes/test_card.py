"""The model card's reading of the training log."""

import math

from explorer.shapes.card import training_history


def _log(path, rows):
    path.write_text("step,loss,mse,lr,elapsed_s\n"
                    + "".join(f"{s},0.1,0.1,{lr},{e}\n" for s, lr, e in rows))
    return path


def _cosine(step, total, peak=3e-4, warmup=4):
    lr = peak * min(1.0, (step + 1) / warmup)
    half = total // 2
    if step > half:
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - half) / (total - half)))
    return lr


def test_sessions_wall_time_and_an_extended_schedule(tmp_path):
    rows = [(s, _cosine(s - 1, 20), 2.0 * s) for s in range(1, 8)]  # killed after step 7
    rows += [(s, _cosine(s - 1, 20), 2.0 * (s - 6)) for s in range(7, 21)]  # resumed (re-logs 7)
    rows += [(s, _cosine(s - 1, 40), 3.0 * (s - 20)) for s in range(21, 41)]  # extended to 40
    h = training_history(_log(tmp_path / "unet_log.csv", rows))
    assert h["sessions"] == [(1, 7), (7, 20), (21, 40)]
    assert h["restarts"] == [21]  # warm-up is not a restart
    assert math.isclose(h["hours"] * 3600, 14 + 28 + 60)
    assert h["last_step"] == 40


def test_one_uninterrupted_run_and_no_log(tmp_path):
    rows = [(s, _cosine(s - 1, 30), 1.5 * s) for s in range(1, 31)]
    h = training_history(_log(tmp_path / "unet_log.csv", rows))
    assert h["sessions"] == [(1, 30)] and h["restarts"] == []
    assert training_history(tmp_path / "missing.csv") is None


def test_history_up_to_a_mid_run_checkpoint(tmp_path):
    rows = [(s, _cosine(s - 1, 30), 1.5 * s) for s in range(1, 31)]
    h = training_history(_log(tmp_path / "unet_log.csv", rows), upto=12)
    assert h["last_step"] == 12 and h["sessions"] == [(1, 12)]
    assert math.isclose(h["hours"] * 3600, 18)


def test_objective_reads_old_and_new_configs():
    from explorer.shapes.card import _objective

    old = _objective({"min_snr_gamma": 5.0})  # a config from before the options existed
    assert "min-SNR-γ 5 weighting" in old and "scaled-linear" in old
    new = _objective({"min_snr_gamma": 5.0, "loss_weighting": "clamped_v",
                      "zero_terminal_snr": True})
    assert "min(1, 5/(SNR+1))" in new and "zero terminal SNR" in new


def test_probe_line_reports_the_placeless_square_when_measured():
    from explorer.shapes.card import _probe_line

    old = {"layout_probe": {"seeds": 4.0, "place": 1.0, "seed_lock": 0.111}}
    assert "seed lock 0.111" in _probe_line(old) and "no place" not in _probe_line(old)
    new = {"layout_probe": {**old["layout_probe"], "placeless_found": 1.0,
                            "placeless_places": 3.0}}
    assert "landed in 3 different places over the 4 seeds (found in 100%)" in _probe_line(new)
