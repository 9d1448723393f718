"""SAE folders on disk: ours, SAELens's and sparsify's. Safetensors + JSON only; never pickle.

Ours (what `save_sae` writes by default):
    cfg.json          every SAEConfig field, plus "num_latents" and "architecture" (SAELens's
                      name for the activation: "topk", "standard" for ReLU, "jumprelu")
    sae.safetensors   W_enc (d_in, d_sae), W_dec (d_sae, d_in), b_enc (d_sae,), b_dec (d_in,),
                      and threshold (d_sae,) for JumpReLU

SAELens (`format="saelens"`, and read by `load_sae`), the inference architectures whose encoder
the explorer runs; any other ("gated", "transcoder", ...) is refused in one line naming it:
    cfg.json                  d_in, d_sae, architecture, and for "topk" its k (top level or
                              under activation_fn_kwargs); hook_name (top level or under
                              metadata); apply_b_dec_to_input; rescale_acts_by_decoder_norm
    sae_weights.safetensors   the same tensors (JumpReLU: threshold, or an older log_threshold);
                              unknown extra tensors are ignored

A TopK folder with `rescale_acts_by_decoder_norm: true` (what SAELens's trainer saves with
`save_model`) selects and scales latents by pre·‖W_dec row‖ and decodes z/‖W_dec row‖: folding
the norms into W_enc, b_enc and W_dec (SAELens's own `fold_W_dec_norm`) gives the same codes
exactly, so it loads folded. `apply_b_dec_to_input: false` folds into b_enc likewise. A ReLU or
JumpReLU SAE has no k: its `k` here is the code width (CODE_WIDTH unless `code_width` says).

SAELens has no input-scale field, so saving a normalised SAE in its format folds the scale into
the weights (codes are unchanged; decoder rows then have norm 1/scale). The metadata names no
SAELens version unless the SAE came from a SAELens folder that named one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from explorer.atomic import atomic_write_bytes, atomic_write_text
from explorer.errors import UserError
from explorer.sae.config import SAEConfig
from explorer.sae.model import TopKSAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
SAELENS_WEIGHTS_FILE = "sae_weights.safetensors"
ARCHITECTURE = "topk"
# SAELens's architecture names and the activation each stands for (SAEConfig.activation).
SAELENS_ACTIVATIONS = {"topk": "topk", "standard": "relu", "jumprelu": "jumprelu"}
ARCHITECTURE_OF = {activation: arch for arch, activation in SAELENS_ACTIVATIONS.items()}
# Codes kept per token for an imported ReLU / JumpReLU SAE (which has no k of its own): the
# index stores (samples, steps, h, w, k) codes, so a width of d_sae would not fit a real SAE.
CODE_WIDTH = 64
# Our own fields ride along in SAELens cfg.json under this key (SAELens ignores unknown keys).
EXTRA_KEY = "concept_explorer"
_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec")
_BLOCK_RE = re.compile(r"((?:down|up)_blocks\.\d+\.attentions\.\d+|mid_block\.attentions\.\d+)")


def _tensor_names(cfg: SAEConfig) -> tuple[str, ...]:
    return _TENSORS + (("threshold",) if cfg.activation == "jumprelu" else ())


class SAELoadError(UserError, ValueError):
    """An SAE folder that cannot be loaded; the message names the folder and the problem (one
    line: the CLI prints it as it is)."""

    def __init__(self, folder: str | Path, problem: str) -> None:
        super().__init__(f"{folder}: {problem}")
        self.folder = Path(folder)
        self.problem = problem


def _tensors_for_save(sae: TopKSAE, fold_scale: bool) -> dict[str, torch.Tensor]:
    s = sae.cfg.input_scale if fold_scale else 1.0
    with torch.no_grad():
        tensors = {
            "W_enc": sae.W_enc * s,
            "W_dec": sae.W_dec / s,
            "b_enc": sae.b_enc,
            "b_dec": sae.b_dec / s,
        }
        if sae.cfg.activation == "jumprelu":
            # Pre-activations are unchanged by the fold ((s·x − b)·W = (x − b/s)·sW), so θ is.
            tensors["threshold"] = sae.threshold
        # safetensors wants contiguous CPU tensors; W_enc is stored latent-major in memory.
        return {key: t.detach().to("cpu").contiguous() for key, t in tensors.items()}


def _saelens_meta(sae: TopKSAE) -> dict[str, Any]:
    cfg = sae.cfg
    extra = cfg.to_dict()
    extra.update(normalisation="none", input_scale=1.0)  # folded into the weights
    hook = cfg.stats.get("hook_name") or cfg.block or None
    metadata: dict[str, Any] = {"model_name": cfg.model or None, "hook_name": hook}
    version = cfg.stats.get("sae_lens_version")
    if isinstance(version, str) and version:
        metadata["sae_lens_version"] = version  # only a version the source folder named
    meta = {
        "architecture": ARCHITECTURE_OF[cfg.activation],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": str(sae.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        # Top level too: SAELens reads a config that names no version with its pre-6.0 rules,
        # which take the metadata from these top-level keys.
        "model_name": metadata["model_name"],
        "hook_name": hook,
        "metadata": metadata,
        EXTRA_KEY: extra,
    }
    if cfg.activation == "topk":
        meta.update(k=cfg.k, rescale_acts_by_decoder_norm=False)
    return meta


def save_sae(sae: TopKSAE, folder: str | Path, *, format: str = "native") -> Path:
    """Write `sae` to `folder` ("native": cfg.json + sae.safetensors, or "saelens")."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    if format == "native":
        meta = {
            **cfg.to_dict(),
            "num_latents": cfg.d_sae,
            "architecture": ARCHITECTURE_OF[cfg.activation],
        }
        tensors = _tensors_for_save(sae, fold_scale=False)
        weights_name = WEIGHTS_FILE
    elif format == "saelens":
        meta = _saelens_meta(sae)
        tensors = _tensors_for_save(sae, fold_scale=True)
        weights_name = SAELENS_WEIGHTS_FILE
    else:
        raise ValueError(f"unknown SAE format {format!r} (use 'native' or 'saelens')")
    # Serialised here and written by Python, so the file gets the umask's permissions
    # (safetensors' own writer makes it owner-only, which a colleague opening a shared
    # workspace on a cluster could not read).
    atomic_write_bytes(folder / weights_name, save(tensors))
    text = json.dumps(meta, indent=2, sort_keys=True)
    atomic_write_text(folder / CFG_FILE, text)
    return folder


def load_sae(
    folder: str | Path,
    *,
    expect_block: str | None = None,
    expect_d_in: int | None = None,
    device: torch.device | str = "cpu",
    code_width: int | None = None,
) -> TopKSAE:
    """Load an SAE folder written by `save_sae`, SAELens (topk, standard, jumprelu) or sparsify.

    `code_width` sets the k of a ReLU / JumpReLU SAE from SAELens (capped at d_sae; default:
    the k our export recorded, else CODE_WIDTH); TopK SAEs keep their own k.
    Raises SAELoadError for a missing or malformed cfg.json or weights file, an architecture
    the explorer cannot run, weights whose shapes disagree with the config, non-finite
    weights, or a block / d_in other than expected.
    """
    folder = Path(folder)
    cfg_path = folder / CFG_FILE
    if not folder.is_dir():
        raise SAELoadError(folder, "is not a folder" if folder.exists() else "does not exist")
    if not cfg_path.is_file():
        raise SAELoadError(folder, f"missing {CFG_FILE}")
    try:
        raw = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAELoadError(folder, f"unreadable {CFG_FILE} ({exc})") from None
    if not isinstance(raw, dict):
        raise SAELoadError(folder, f"{CFG_FILE} is not a JSON object")

    if (folder / WEIGHTS_FILE).is_file():
        tensors = _read_weights(folder, WEIGHTS_FILE)
        if "encoder.weight" in tensors:
            cfg, tensors = _from_sparsify(folder, raw, tensors)
        else:
            cfg = _native_config(folder, raw)
    elif (folder / SAELENS_WEIGHTS_FILE).is_file():
        tensors = _read_weights(folder, SAELENS_WEIGHTS_FILE)
        cfg, tensors = _from_saelens(folder, raw, tensors, code_width)
    else:
        raise SAELoadError(folder, f"missing weights ({WEIGHTS_FILE} or {SAELENS_WEIGHTS_FILE})")

    _check_tensors(folder, cfg, tensors)
    if expect_d_in is not None and cfg.d_in != expect_d_in:
        raise SAELoadError(folder, f"d_in is {cfg.d_in}, expected {expect_d_in}")
    if expect_block is not None and cfg.block != expect_block:
        raise SAELoadError(folder, f"block is {cfg.block!r}, expected {expect_block!r}")

    sae = TopKSAE(cfg, device=device)
    with torch.no_grad():
        for name in _tensor_names(cfg):
            getattr(sae, name).copy_(tensors[name])
    return sae


def _read_weights(folder: Path, name: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(folder / name))
    except (OSError, SafetensorError) as exc:
        raise SAELoadError(folder, f"unreadable {name} ({exc})") from None


def _make_config(folder: Path, fields: dict[str, Any]) -> SAEConfig:
    try:
        return SAEConfig.from_dict(fields)
    except (TypeError, ValueError) as exc:
        raise SAELoadError(folder, f"invalid {CFG_FILE} ({exc})") from None


def _unsupported(folder: Path, arch: Any) -> SAELoadError:
    known = ", ".join(repr(a) for a in SAELENS_ACTIVATIONS)
    return SAELoadError(folder, f"architecture {arch!r} is not supported (the explorer runs {known})")


def _native_config(folder: Path, raw: dict[str, Any]) -> SAEConfig:
    arch = raw.get("architecture", ARCHITECTURE)
    if arch not in SAELENS_ACTIVATIONS:
        raise _unsupported(folder, arch)
    activation = raw.get("activation", SAELENS_ACTIVATIONS[arch])
    if activation != SAELENS_ACTIVATIONS[arch]:
        raise SAELoadError(folder, f"architecture {arch!r} and activation {activation!r} disagree")
    return _make_config(folder, {**raw, "activation": activation})


def _block_from_hook(hook: Any) -> str:
    match = _BLOCK_RE.search(hook) if isinstance(hook, str) else None
    return match.group(1) if match else ""


def _saelens_architecture(folder: Path, raw: dict[str, Any]) -> str:
    arch = raw.get("architecture", "standard")
    act_fn = raw.get("activation_fn", raw.get("activation_fn_str"))
    # Pre-6.0 SAELens wrote TopK SAEs as architecture "standard" with activation_fn "topk".
    if arch == "standard" and act_fn == "topk":
        return "topk"
    if arch not in SAELENS_ACTIVATIONS:
        raise _unsupported(folder, arch)
    if arch == "standard" and act_fn not in (None, "relu"):
        raise SAELoadError(folder, f"activation_fn {act_fn!r} is not supported (only 'relu')")
    return arch


def _from_saelens(
    folder: Path, raw: dict[str, Any], tensors: dict[str, torch.Tensor], code_width: int | None
) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    arch = _saelens_architecture(folder, raw)
    activation = SAELENS_ACTIVATIONS[arch]
    _check_saelens_support(folder, raw, tensors)
    k = _saelens_k(folder, raw, activation, code_width)
    fields = _saelens_fields(raw)
    fields.update(d_in=raw["d_in"], d_sae=raw["d_sae"], k=k, activation=activation)
    if activation != "topk":
        fields["batch_topk"] = False
    cfg = _make_config(folder, fields)
    return cfg, _saelens_tensors(folder, raw, tensors, cfg)


def _check_saelens_support(
    folder: Path, raw: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    """Refuse the SAELens options the explorer's SAE cannot reproduce."""
    norm = raw.get("normalize_activations", "none")
    if norm not in ("none", False, None):
        raise SAELoadError(folder, f"normalize_activations {norm!r} is not supported")
    reshape = raw.get("reshape_activations", "none")
    if reshape not in ("none", None):
        raise SAELoadError(folder, f"reshape_activations {reshape!r} is not supported")
    for key in ("d_in", "d_sae"):
        if key not in raw:
            raise SAELoadError(folder, f"{CFG_FILE} has no {key!r}")
    scaling = tensors.get("scaling_factor", tensors.get("finetuning_scaling_factor"))
    if scaling is not None and not bool((scaling == 1).all()):
        raise SAELoadError(folder, "a finetuning scaling factor is not supported")


def _saelens_k(folder: Path, raw: dict[str, Any], activation: str, code_width: int | None):
    """TopK's k; for ReLU / JumpReLU the code width (given, recorded by our export, or 64)."""
    extra = raw.get(EXTRA_KEY)
    if activation == "topk":
        k = raw.get("k", (raw.get("activation_fn_kwargs") or {}).get("k"))
        if k is None:
            raise SAELoadError(folder, f"{CFG_FILE} gives no k (top level or activation_fn_kwargs)")
        return k
    width = code_width or (extra.get("k") if isinstance(extra, dict) else None) or CODE_WIDTH
    d_sae = raw["d_sae"]
    return min(width, d_sae) if isinstance(width, int) and isinstance(d_sae, int) else width


def _saelens_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """Provenance: ours where our export recorded it, else what SAELens's cfg.json says."""
    extra = raw.get(EXTRA_KEY)
    meta = raw.get("metadata") or raw.get("meta") or {}
    hook = raw.get("hook_name", raw.get("hook_point", meta.get("hook_name")))
    fields: dict[str, Any] = {"branch": "", "stats": {}}
    if isinstance(extra, dict):
        fields.update(extra)
        return fields
    fields["block"] = _block_from_hook(hook)
    fields["model"] = raw.get("model_name", meta.get("model_name")) or ""
    if hook is not None:
        fields["stats"]["hook_name"] = hook
    version = meta.get("sae_lens_version", raw.get("sae_lens_version"))
    if isinstance(version, str) and version:
        fields["stats"]["sae_lens_version"] = version
    return fields


def _saelens_tensors(
    folder: Path, raw: dict[str, Any], tensors: dict[str, torch.Tensor], cfg: SAEConfig
) -> dict[str, torch.Tensor]:
    """SAELens's weights as the explorer's SAE computes with them (same codes, same x̂)."""
    activation = cfg.activation
    names = _tensor_names(cfg)
    if activation == "jumprelu" and "threshold" not in tensors and "log_threshold" in tensors:
        tensors = {**tensors, "threshold": tensors["log_threshold"].float().exp()}  # older files
    missing = [name for name in names if name not in tensors]
    if missing:
        raise SAELoadError(folder, f"{SAELENS_WEIGHTS_FILE} lacks {', '.join(missing)}")
    tensors = {name: tensors[name].float() for name in names}
    _check_tensors(folder, cfg, tensors)
    if not raw.get("apply_b_dec_to_input", True):
        # Encoder sees x rather than x − b_dec: fold that into b_enc (exact).
        tensors["b_enc"] = tensors["b_enc"] + tensors["b_dec"] @ tensors["W_enc"]
    if activation == "topk" and raw.get("rescale_acts_by_decoder_norm"):
        # SAELens: z = TopK(pre·n), x̂ = (z/n)·W_dec + b_dec with n the decoder row norms.
        # Folding n into W_enc, b_enc and W_dec (SAELens's fold_W_dec_norm, with its clamp)
        # gives the same z and x̂ with plain TopK.
        n = tensors["W_dec"].norm(dim=1).clamp(min=1e-8)
        tensors["W_enc"] = tensors["W_enc"] * n
        tensors["b_enc"] = tensors["b_enc"] * n
        tensors["W_dec"] = tensors["W_dec"] / n[:, None]
    return tensors


def _from_sparsify(
    folder: Path, raw: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> tuple[SAEConfig, dict[str, torch.Tensor]]:
    if raw.get("activation", "topk") != "topk":
        raise SAELoadError(folder, f"activation {raw.get('activation')!r} is not supported")
    if "d_in" not in raw or "k" not in raw:
        raise SAELoadError(folder, f"{CFG_FILE} needs 'd_in' and 'k'")
    d_sae = raw.get("num_latents") or raw["d_in"] * raw.get("expansion_factor", 0)
    missing = [n for n in ("encoder.weight", "encoder.bias", "W_dec", "b_dec") if n not in tensors]
    if missing:
        raise SAELoadError(folder, f"{WEIGHTS_FILE} lacks {', '.join(missing)}")
    cfg = _make_config(folder, {"d_in": raw["d_in"], "d_sae": d_sae, "k": raw["k"], "branch": ""})
    return cfg, {
        "W_enc": tensors["encoder.weight"].float().t(),
        "b_enc": tensors["encoder.bias"].float(),
        "W_dec": tensors["W_dec"].float(),
        "b_dec": tensors["b_dec"].float(),
    }


def _check_tensors(folder: Path, cfg: SAEConfig, tensors: dict[str, torch.Tensor]) -> None:
    expected = {
        "W_enc": (cfg.d_in, cfg.d_sae),
        "W_dec": (cfg.d_sae, cfg.d_in),
        "b_enc": (cfg.d_sae,),
        "b_dec": (cfg.d_in,),
    }
    if cfg.activation == "jumprelu":
        expected["threshold"] = (cfg.d_sae,)
    for name, shape in expected.items():
        if name not in tensors:
            raise SAELoadError(folder, f"weights lack {name}")
        got = tuple(tensors[name].shape)
        if got != shape:
            raise SAELoadError(folder, f"{name} has shape {got}, cfg.json implies {shape}")
        if not bool(torch.isfinite(tensors[name]).all()):
            raise SAELoadError(folder, f"{name} contains NaN or inf")
