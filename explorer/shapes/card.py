"""The bundled model's card (MODEL.md): architecture, training, loss curve, samples, adherence.

Every number in the card is read from the model folder, the training folder's logs, or the
checker's JSON output; nothing is typed in by hand.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np

from explorer.atomic import atomic_write_text


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _loss_curve(train_dir: Path, out: Path) -> tuple[int, float, float] | None:
    """Plot the UNet loss (raw and smoothed); returns (last step, first/last smoothed loss)."""
    from explorer.figures import Series, line_plot

    log = train_dir / "unet_log.csv"
    if not log.is_file():
        return None
    rows = {}
    with log.open() as f:
        for r in csv.DictReader(f):
            rows[int(r["step"])] = float(r["loss"])  # a resumed run re-logs a step: keep the last
    steps = np.array(sorted(rows))
    loss = np.array([rows[s] for s in steps])
    k = max(1, len(loss) // 60)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    line_plot(
        [Series("loss (weighted v-prediction MSE)", steps.tolist(), loss.tolist()),
         Series(f"moving average ({k} steps)", steps[k - 1 :].tolist(), smooth.tolist())],
        out, title="UNet + text encoder training loss", xlabel="step", ylabel="loss",
    )
    return int(steps[-1]), float(smooth[0]), float(smooth[-1])


def training_history(log: Path, upto: int | None = None) -> dict | None:
    """What unet_log.csv says about how the run went: wall time summed over its sessions (each
    resume restarts the logged clock), the sessions' step ranges, and the steps where the
    learning rate went back up (the run was resumed with a larger --steps, which re-plans the
    cosine decay). `upto`: only the rows up to that step (a checkpoint taken mid-run)."""
    if not log.is_file():
        return None
    with log.open() as f:
        rows = [(int(r["step"]), float(r["lr"]), float(r.get("elapsed_s") or "nan"))
                for r in csv.DictReader(f)]
    if upto is not None:
        rows = [r for r in rows if r[0] <= upto]
    if not rows:
        return None
    sessions, restarts = [[rows[0][0], rows[0][0], rows[0][2]]], []
    for (_, lr0, e0), (s1, lr1, e1) in itertools.pairwise(rows):
        if e1 < e0:  # the clock restarted: a resumed session
            sessions.append([s1, s1, e1])
        sessions[-1][1:] = [s1, e1]
        # Warm-up raises the lr too, but by at most 2× a step (at its first step); a re-planned
        # schedule jumps from the decayed lr back to the peak.
        if lr0 > 0 and lr1 / lr0 > 3:
            restarts.append(s1)
    return {
        "hours": sum(e for _, _, e in sessions if e == e) / 3600,
        "sessions": [(a, b) for a, b, _ in sessions],
        "restarts": restarts,
        "last_step": rows[-1][0],
    }


def _adherence_table(reports: list[dict]) -> str:
    keys = ("colour", "shape", "place", "size", "background", "all_objects")
    head = "| split | n | steps | guidance | " + " | ".join(keys) + " |"
    sep = "|---" * (4 + len(keys)) + "|"
    lines = [head, sep]
    for r in reports:
        s = r["scores"]
        lines.append(
            f"| {r['split']} | {r['n']} | {r['steps']} | {r['guidance']:g} | "
            + " | ".join(f"{s[k]:.3f}" for k in keys) + " |"
        )
    bars = reports[0].get("bars", {}) if reports else {}
    if bars:
        lines.append(
            "| *bar (held-in)* | | | | "
            + " | ".join(f"≥ {bars[k]:.2f}" if k in bars else "" for k in keys) + " |"
        )
    return "\n".join(lines)


def _ran(history: dict | None, stage: str) -> str:
    if not history:
        return ""
    ran = (f"{stage}: {history['last_step']:,} steps in {history['hours']:.2f} h of logged "
           f"wall time over {len(history['sessions'])} session(s) (each resume continues "
           "from the last checkpoint).")
    for step in history["restarts"]:
        ran += (f" At step {step:,} the run was extended (resumed with a larger `--steps`): "
                "the learning rate went back up and the cosine decay was re-planned over "
                "the new total, so the schedule above describes the final plan only.")
    return ran


def _objective(cfg: dict) -> str:
    """How a run weighed its loss and which noise schedule it trained on, from its config
    (runs from before these options existed used min-SNR on SD's schedule)."""
    gamma = cfg.get("min_snr_gamma", 5.0)
    if cfg.get("loss_weighting", "min_snr") == "clamped_v":
        weight = (f"v-prediction MSE weighted min(1, {gamma:g}/(SNR+1)) (plain v-loss at the noisy "
                  f"steps, min-SNR-γ {gamma:g} at the clean ones)")
    else:
        weight = f"v-prediction with min-SNR-γ {gamma:g} weighting"
    schedule = ("zero terminal SNR (betas rescaled so that t = 999 is pure noise)"
                if cfg.get("zero_terminal_snr", False) else
                "SD's scaled-linear betas (t = 999 keeps ~7% of the image)")
    return f"{weight}, on {schedule}"


def _recipe(cfg: dict) -> str:
    """A UNet run's steps, optimiser, schedule, objective, dropout and EMA, from its config."""
    return (f"{cfg['unet_steps']:,} steps, batch {cfg['batch']}, AdamW lr {cfg['lr']:g} "
            f"({cfg['warmup']} warm-up steps, cosine decay over the second half), "
            f"{_objective(cfg)}, {cfg['prompt_dropout']:.0%} prompt dropout (for classifier-free "
            f"guidance), {_caption_dropout(cfg)}EMA {cfg['ema_decay']} (the shipped weights)")


def _caption_dropout(cfg: dict) -> str:
    text = ""
    if cfg.get("place_dropout", 0.0):
        text += (f"{cfg['place_dropout']:.0%} of captions without their places (\"a large red "
                 "square on a white background\": the paper's prompts name no places, so the "
                 "model must be able to choose a layout itself), ")
    if cfg.get("background_dropout", 0.0):
        text += (f"{cfg['background_dropout']:.0%} without their background, drawn "
                 "independently (\"a large red square at the top left\": the paper's style edits "
                 "add a style the prompt does not name), ")
    return text


def _probe_line(report: dict) -> str:
    p = report.get("layout_probe") or {}
    if not p:
        return ""
    return (f"layout probe ({p['seeds']:g} seeds × 9 prompted places, one object, same seed "
            f"across the places): place right {p['place']:.3f}, **seed lock {p['seed_lock']:.3f}** "
            "(the share of a seed's nine prompts that land in the same place: 1.0 means the "
            "initial noise, not the prompt, decides the layout; a prompt-following model "
            "scores about 1/9)"
            + (f". The same square with no place in the prompt (\"a large red square on a white "
               f"background\") landed in {p['placeless_places']:g} different places over the "
               f"{p['seeds']:g} seeds (found in {p['placeless_found']:.0%}): a model that can "
               "choose the layout itself, as SD does for the paper's prompts, spreads it"
               if "placeless_places" in p else ""))


def write_card(model_dir: Path, train_dir: Path, checks: list[Path], grid: Path | None = None,
               notes: str = "", base_train_dirs: list[Path] = (),
               base_checks: list[Path] = ()) -> Path:
    """Write MODEL.md (and loss.png) into `model_dir`. For a fine-tune, `base_train_dirs` are
    the runs it descends from, oldest first."""
    from explorer.engine import load_model

    model_dir, train_dir = Path(model_dir), Path(train_dir)
    model = load_model(model_dir, device="cpu")
    cfg = json.loads((train_dir / "config.json").read_text())
    curve = _loss_curve(train_dir, model_dir / "loss.png")
    size_mb = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file()) / 2**20
    blocks = "\n".join(
        f"| `{b}` | {model.block_geometry(b)[0]}×{model.block_geometry(b)[1]} | "
        f"{model.block_geometry(b)[2]} |"
        for b in sorted(model.block_names())
    )
    reports = [json.loads(Path(c).read_text()) for c in checks]
    ran = _ran(training_history(train_dir / "unet_log.csv"), "UNet stage")
    unet_stage = f"3. UNet + text encoder jointly: {_recipe(cfg)}."
    if cfg.get("init_from"):
        unet_stage = _fine_tune_stage(cfg, [Path(d) for d in base_train_dirs], base_checks, ran)
        ran = ""
    text = (_architecture_section(model, size_mb, blocks)
            + _training_section(cfg, unet_stage, ran, curve)
            + _results_section(grid, reports, notes))
    out = model_dir / "MODEL.md"
    atomic_write_text(out, text)
    return out


def _architecture_section(model, size_mb: float, blocks: str) -> str:
    pipe = model.pipe
    return f"""# mini-sd-shapes: the bundled miniature Stable Diffusion

A text-to-image latent diffusion model in the standard diffusers `StableDiffusionPipeline`
layout, trained from scratch by this project on the synthetic *shapes world*
(`explorer/shapes/world.py`) so that the explorer runs with no downloads and every concept can be
checked against exact ground truth. Load it like any SD 1.x folder:
`StableDiffusionPipeline.from_pretrained("resources/mini-sd-shapes")`.

## Architecture ({size_mb:.1f} MB on disk, safetensors)

| component | class | parameters |
|---|---|---|
| UNet | `UNet2DConditionModel`, channels {tuple(pipe.unet.config.block_out_channels)}, {pipe.unet.config.layers_per_block} layer(s) per block, cross-attention dim {pipe.unet.config.cross_attention_dim} | {_params(pipe.unet) / 1e6:.2f} M |
| VAE | `AutoencoderKL`, 64×64×3 ↔ 16×16×4, channels {tuple(pipe.vae.config.block_out_channels)}, scaling factor {pipe.vae.config.scaling_factor:.4f} | {_params(pipe.vae) / 1e6:.2f} M |
| text encoder | `CLIPTextModel`, {pipe.text_encoder.config.num_hidden_layers} layers, width {pipe.text_encoder.config.hidden_size}, {pipe.text_encoder.config.max_position_embeddings} tokens | {_params(pipe.text_encoder) / 1e6:.2f} M |
| tokenizer | word-level over the world's {len(pipe.tokenizer)} tokens (`tokenizers` WordLevel in a fast tokenizer) | – |
| scheduler | `DDIMScheduler`, v-prediction, scaled-linear betas{" rescaled to zero terminal SNR" if pipe.scheduler.config.get("rescale_betas_zero_snr") else ""}, trailing spacing (the first step is t = 999) | – |

Cross-attention (`Transformer2DModel`) blocks, where Δ can be captured:

| block | grid | d |
|---|---|---|
{blocks}

The explorer's default three blocks mirror the paper's SD 1.4 choice (down 16×16, mid 8×8,
up 16×16): {", ".join(f"`{b}`" for b in model.defaults["blocks"])}. Defaults for sampling are in
`explorer.json`: {model.defaults["steps"]} DDIM steps, guidance {model.defaults["guidance"]:g}.

"""


def _training_section(cfg: dict, unet_stage: str, ran: str, curve) -> str:
    return f"""## Training

`explorer shapes train --out DIR` (resumable with `--resume`; batches are a pure function of
seed and step, so a killed run resumes to the same weights):

1. VAE: {cfg["vae_steps"]} steps, batch {cfg["vae_batch"]}, AdamW lr {cfg["vae_lr"]:g} cosine,
   MSE + 0.5·L1 with object pixels weighted {cfg.get("vae_object_weight", 1):g}× (objects are a
   small share of the pixels; unweighted, the VAE traded their colour for background texture),
   KL 1e-6.
2. {cfg["dataset"]:,} training scenes (seeds 0…{cfg["dataset"] - 1}, train split) encoded once.
{unet_stage}

Trained on this project's 2-core CPU (no GPU was available to the session).
{ran}
{f"Final logged step {curve[0]}; smoothed loss {curve[1]:.4f} → {curve[2]:.4f}." if curve else ""}

![loss](loss.png)

"""


def _results_section(grid, reports: list[dict], notes: str) -> str:
    return f"""## Samples

{"![samples](samples.png)" if grid else ""}

## Prompt adherence (measured by the checker)

`explorer shapes check --n N [--split held_out] --json out.json` generates N prompts of the world
(seeds from 1,000,000 on: scenes the UNet never trained on) and scores each prompted object with
`explorer/shapes/checker.py` (100% on true renders). The held-out split contains colour–shape
pairs never seen in training.

{_adherence_table(reports)}

{_probe_line(reports[0]) if reports else ""}

{notes}
"""


def _fine_tune_stage(cfg: dict, base_dirs: list[Path], base_checks, ran: str) -> str:
    """The UNet stage of a run that started from another run's checkpoint: every run of the
    chain (`base_dirs`, oldest first, each the one the next started from), and what the first
    base model did before any fine-tune."""
    import torch

    def start_step(run_cfg: dict) -> int | None:
        init = Path(run_cfg.get("init_from") or "")
        return torch.load(init, weights_only=True)["step"] if init.is_file() else None

    runs = [(Path(d), json.loads((Path(d) / "config.json").read_text())) for d in base_dirs
            if (Path(d) / "config.json").is_file()]
    cfgs = [c for _, c in runs]
    chain = [*cfgs, cfg]
    lines = [f"3. UNet + text encoder jointly, in {max(len(chain), 2)} runs:"]
    if not cfgs:
        lines.append("   - **base run**: (its training folder was not given)")
    for i, (d, run) in enumerate(runs):
        stop = start_step(chain[i + 1])
        at = f", stopped at step {stop:,}" if stop is not None else ""
        name = "base run" if i == 0 else f"fine-tune {i}"
        how = (f"batch {run.get('batch', '?')}, AdamW lr {run.get('lr', float('nan')):g}, "
               f"{_objective(run)}" if i == 0 else _recipe(run))
        hist = _ran(training_history(Path(d) / "unet_log.csv", upto=stop),
                    "Base run" if i == 0 else f"Fine-tune {i}")
        lines.append(f"   - **{name}** ({run['unet_steps']:,}-step plan{at}): {how}. {hist}")
    start = start_step(cfg)
    at = f" at step {start:,}" if start is not None else ""
    name = "fine-tune" if len(chain) <= 2 else f"fine-tune {len(chain) - 1}"
    prev = "the base run's" if len(chain) <= 2 else "the previous run's"
    lines.append(f"   - **{name}** from {prev} checkpoint{at} (live and EMA weights; a fresh "
                 f"optimiser, warm-up and schedule): {_recipe(cfg)}. {ran}")
    text = "\n".join(lines) + "\n"
    reports = [json.loads(Path(c).read_text()) for c in base_checks]
    if reports:
        text += f"""
   The base run's model, measured before any fine-tune:

{_adherence_table(reports)}

   {_probe_line(reports[0])}
"""
    return text
