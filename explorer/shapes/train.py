"""Training the bundled miniature Stable Diffusion on the shapes world.

Three resumable stages, each checkpointed into the output folder:

1. the VAE (64×64 RGB ↔ 16×16×4 latents), reconstruction + a tiny KL term;
2. a fixed training set of scenes encoded once to latents (the UNet stage then never touches
   pixels, which is what makes CPU training affordable);
3. the UNet and the text encoder together, v-prediction with min-SNR weighting, 10% prompt
   dropout for classifier-free guidance, EMA weights.

Batches are a pure function of (seed, step), so a run killed at any point and resumed gives the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from explorer.atomic import atomic_path
from explorer.errors import UserError
from explorer.shapes.config import LOSS_WEIGHTINGS, TrainConfig  # noqa: F401 (re-exported)
from explorer.shapes.model import (
    make_scheduler,
    make_text_encoder,
    make_tokenizer,
    make_unet,
    make_vae,
    save_pipeline,
)
from explorer.shapes.world import Scene


def _jsonable(cfg: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def _atomic_save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:  # a file object: np.save adds no ".npy"
        np.save(f, array)


def _images_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def _render(seeds) -> np.ndarray:
    return np.stack([Scene.from_seed(int(s)).render() for s in seeds])


def _render_weighted(seeds, object_weight: float) -> tuple[np.ndarray, torch.Tensor]:
    """Images and per-pixel loss weights: objects are a small share of the pixels, and a plain
    MSE lets the VAE trade their colour and shape for background texture."""
    scenes = [Scene.from_seed(int(s)) for s in seeds]
    images = np.stack([s.render() for s in scenes])
    weights = np.stack([1.0 + (object_weight - 1.0) * s.masks().any(0) for s in scenes])
    return images, torch.from_numpy(weights).float()[:, None]


def _log(out: Path, name: str, row: dict) -> None:
    path = out / f"{name}_log.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _progress(total: int, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=5)


def train_vae(cfg: TrainConfig):
    final = cfg.out / "vae_final"
    if (final / "config.json").exists():
        from diffusers import AutoencoderKL

        return AutoencoderKL.from_pretrained(final, use_safetensors=True)
    torch.manual_seed(cfg.seed)
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    ckpt = cfg.out / "vae_ckpt.pt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    bar = _progress(cfg.vae_steps, step, "vae")
    while step < cfg.vae_steps:
        # Seeds far above the UNet's training set: the VAE sees other scenes than the UNet.
        seeds = 10_000_000 + step * cfg.vae_batch + np.arange(cfg.vae_batch)
        images, weight = _render_weighted(seeds, cfg.vae_object_weight)
        x = _images_to_tensor(images)
        lr = cfg.vae_lr * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps))
        for g in opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        mse = F.mse_loss(rec, x)
        err = rec - x
        loss = (weight * (err.pow(2) + 0.5 * err.abs())).mean() + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(mse=f"{mse.item():.4f}")
        _log(cfg.out, "vae", {"step": step, "mse": mse.item(), "loss": loss.item()})
        if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
            _atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
    bar.close()
    # SD's convention: latents are scaled to unit variance before diffusion.
    with torch.no_grad():
        x = _images_to_tensor(_render(20_000_000 + np.arange(256)))
        std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(final, safe_serialization=True)
    return vae


def encode_dataset(cfg: TrainConfig, vae, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    lat_path = cfg.out / "latents.npy"
    ids_path = cfg.out / "input_ids.npy"
    if lat_path.exists() and ids_path.exists():
        return np.load(lat_path, mmap_mode="r"), np.load(ids_path)
    latents = np.empty((cfg.dataset, 4, 16, 16), np.float32)
    prompts = []
    bar = _progress(cfg.dataset, 0, "encode")
    chunk = 256
    with torch.no_grad():
        for i in range(0, cfg.dataset, chunk):
            seeds = np.arange(i, min(i + chunk, cfg.dataset))
            scenes = [Scene.from_seed(int(s)) for s in seeds]
            x = _images_to_tensor(np.stack([s.render() for s in scenes]))
            z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            latents[seeds] = z.numpy()
            prompts += [s.prompt for s in scenes]
            bar.update(len(seeds))
    bar.close()
    ids = tokenizer(prompts, padding="max_length", truncation=True, return_tensors="np").input_ids
    _atomic_npy(ids_path, ids.astype(np.int64))
    _atomic_npy(lat_path, latents)
    return latents, ids


def caption_ids(cfg: TrainConfig, tokenizer, places: bool = True,
                background: bool = True) -> np.ndarray:
    """Token ids of every training scene's caption without its places and/or background (built
    once, cached beside input_ids.npy); rows match `encode_dataset`'s."""
    name = "_".join(n for n, keep in (("placeless", places), ("backgroundless", background))
                    if not keep)
    path = cfg.out / f"input_ids_{name}.npy"
    if path.exists():
        return np.load(path)
    prompts = [Scene.from_seed(int(s)).caption(places, background) for s in range(cfg.dataset)]
    ids = tokenizer(prompts, padding="max_length", truncation=True, return_tensors="np").input_ids
    _atomic_npy(path, ids.astype(np.int64))
    return np.load(path)


def loss_weight(scheduler, t: torch.Tensor, gamma: float, kind: str = "clamped_v") -> torch.Tensor:
    """Per-sample weight of the v-prediction MSE at timesteps `t`.

    In x0 terms the plain v-loss weighs a step by snr + 1 and min-SNR-γ by min(snr, γ); the
    first is ≥ 1 at the noisiest steps, the second tends to 0 there. "clamped_v" takes
    min(snr + 1, γ): min-SNR where the image is nearly clean, the plain v-loss where it is noise.
    """
    ac = scheduler.alphas_cumprod[t]
    snr = ac / (1 - ac)
    if kind == "min_snr":
        return torch.clamp(snr, max=gamma) / (snr + 1)
    if kind == "clamped_v":
        return torch.clamp(snr + 1, max=gamma) / (snr + 1)
    raise ValueError(f"unknown loss weighting {kind!r}")


def train_unet(cfg: TrainConfig, vae, tokenizer) -> Path:
    latents, ids = encode_dataset(cfg, vae, tokenizer)
    # Caption variants, indexed by (place left out) + 2·(background left out).
    variants = [ids]
    if cfg.place_dropout > 0 or cfg.background_dropout > 0:
        variants = [ids, *(caption_ids(cfg, tokenizer, not (v & 1), not (v & 2)) for v in (1, 2, 3))]
    torch.manual_seed(cfg.seed)
    nets = _UNetNets(make_unet(), make_text_encoder(tokenizer), make_unet(),
                     make_text_encoder(tokenizer))
    nets.ema_unet.load_state_dict(nets.unet.state_dict())
    nets.ema_te.load_state_dict(nets.text_encoder.state_dict())
    for p in [*nets.ema_unet.parameters(), *nets.ema_te.parameters()]:
        p.requires_grad_(False)
    params = [*nets.unet.parameters(), *nets.text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = make_scheduler("ddpm", cfg.zero_terminal_snr)
    empty = torch.tensor(tokenizer([""], padding="max_length", return_tensors="np").input_ids)
    ckpt = cfg.out / "unet_ckpt.pt"
    step = _start_unet(cfg, ckpt, nets, opt)
    bar = _progress(cfg.unet_steps, step, "unet")
    t_start = time.time()
    while step < cfg.unet_steps:
        x0, tok = _unet_batch(cfg, step, latents, ids, variants, empty)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t)
        lr = _unet_lr(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        cond = nets.text_encoder(tok).last_hidden_state
        pred = nets.unet(xt, t, cond).sample
        per = (pred - target).pow(2).mean(dim=(1, 2, 3))
        loss = (per * loss_weight(sched, t, cfg.min_snr_gamma, cfg.loss_weighting)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        nets.update_ema(min(cfg.ema_decay, (1 + step) / (10 + step)))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        _log(
            cfg.out,
            "unet",
            {"step": step, "loss": loss.item(), "mse": per.mean().item(), "lr": lr,
             "elapsed_s": round(time.time() - t_start, 1)},
        )
        if step % cfg.checkpoint_every == 0 or step == cfg.unet_steps:
            _atomic_save({**nets.state_dicts(), "opt": opt.state_dict(), "step": step}, ckpt)
            export(cfg, nets.ema_unet, vae, nets.ema_te, tokenizer, step)
    bar.close()
    return cfg.out / "pipeline"


@dataclass
class _UNetNets:
    """The live UNet and text encoder and their EMA copies (the shipped weights)."""

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    ema_unet: torch.nn.Module
    ema_te: torch.nn.Module

    def state_dicts(self) -> dict:
        return {
            "unet": self.unet.state_dict(),
            "text_encoder": self.text_encoder.state_dict(),
            "ema_unet": self.ema_unet.state_dict(),
            "ema_text_encoder": self.ema_te.state_dict(),
        }

    def load(self, state: dict) -> None:
        self.unet.load_state_dict(state["unet"])
        self.text_encoder.load_state_dict(state["text_encoder"])
        self.ema_unet.load_state_dict(state["ema_unet"])
        self.ema_te.load_state_dict(state["ema_text_encoder"])

    def update_ema(self, decay: float) -> None:
        with torch.no_grad():
            for ema, live in ((self.ema_unet, self.unet), (self.ema_te, self.text_encoder)):
                for pe, pl in zip(ema.parameters(), live.parameters(), strict=True):
                    pe.lerp_(pl, 1 - decay)


def _start_unet(cfg: TrainConfig, ckpt: Path, nets: _UNetNets, opt) -> int:
    """The step to start from: the checkpoint's (weights and optimiser restored), or 0, from
    `init_from`'s weights for a fine-tune."""
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        nets.load(state)
        opt.load_state_dict(state["opt"])
        return state["step"]
    if cfg.init_from is not None:
        if not cfg.init_from.is_file():
            raise FileNotFoundError(f"{cfg.init_from}: no such checkpoint to start from")
        nets.load(torch.load(cfg.init_from, weights_only=True))
    return 0


def _unet_batch(cfg: TrainConfig, step: int, latents, ids, variants,
                empty: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step `step`'s latents and caption ids, a pure function of (seed, step)."""
    rng = np.random.default_rng([cfg.seed, step])
    idx = np.sort(rng.choice(len(latents), size=cfg.batch, replace=False))
    x0 = torch.from_numpy(np.asarray(latents[idx], np.float32))
    tok = torch.from_numpy(ids[idx])
    drop = torch.from_numpy(rng.random(cfg.batch) < cfg.prompt_dropout)
    # Drawn after `drop`, each only when used, so runs without place or background dropout
    # keep their batches exactly.
    variant = np.zeros(cfg.batch, np.int64)
    if cfg.place_dropout > 0:
        variant += rng.random(cfg.batch) < cfg.place_dropout
    if cfg.background_dropout > 0:
        variant += 2 * (rng.random(cfg.batch) < cfg.background_dropout)
    if variant.any():
        tok = torch.from_numpy(np.stack([variants[v][i] for v, i in zip(variant, idx, strict=True)]))
    return x0, torch.where(drop[:, None], empty, tok)


def _unet_lr(cfg: TrainConfig, step: int) -> float:
    lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
    # Cosine decay over the last half: fast progress early, a clean finish for EMA.
    half = cfg.unet_steps // 2
    if step > half:
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - half) / (cfg.unet_steps - half)))
    return lr


def export(cfg: TrainConfig, unet, vae, text_encoder, tokenizer, step: int) -> Path:
    """Write the EMA weights as a diffusers pipeline folder, atomically (tmp + rename)."""
    dest = cfg.out / "pipeline"
    tmp = cfg.out / "pipeline.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_pipeline(tmp, unet, vae, text_encoder, tokenizer, cfg.zero_terminal_snr)
    (tmp / "training.json").write_text(json.dumps({"step": step, **_jsonable(cfg)}, indent=1))
    old = cfg.out / "pipeline.old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


# Values that configs written before an option existed were trained with.
_BEFORE_OPTION = {"place_dropout": 0.0, "background_dropout": 0.0, "loss_weighting": "min_snr",
                  "zero_terminal_snr": False, "init_from": None}
# What a resume may change: the plan's length and how the run uses this machine.
_RESUMABLE = {"unet_steps", "threads", "checkpoint_every", "out"}


def check_resume(cfg: TrainConfig) -> None:
    """Refuse to resume a run with a different recipe: its batches, loss or start would change
    mid-run without a trace."""
    path = cfg.out / "config.json"
    if not path.is_file():
        return
    stored = {**_BEFORE_OPTION, **json.loads(path.read_text())}
    now = _jsonable(cfg)
    diff = sorted(k for k in now if k not in _RESUMABLE and stored.get(k) != now[k])
    if diff:
        raise UserError(
            f"{path}: this run was trained with "
            + ", ".join(f"{k}={stored.get(k)!r}" for k in diff)
            + "; resume it with the same settings ("
            + ", ".join(f"{k}={now[k]!r} given" for k in diff) + ")"
        )


def train(cfg: TrainConfig) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_resume(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps(_jsonable(cfg), indent=1))
    tokenizer = make_tokenizer()
    vae = train_vae(cfg)
    vae.requires_grad_(False)
    vae.eval()
    return train_unet(cfg, vae, tokenizer)
