"""Engine benchmark: the cost of capturing Δ, and plain generation time.

Baselines, measured in the same run on the same model and prompts:
- diffusers' own `StableDiffusionPipeline.__call__` (plain generation, no hooks);
- our denoising loop without hooks;
- our loop capturing Δ of the model's default three blocks at every step, both branches;
- our loop recording those blocks' cross-attention maps (DAAM's; engine/attention.py), which
  recomputes each attn2 layer's softmax beside diffusers' fused attention.

Prints the ratios capture / no-hooks (target ≤ 1.10 on CPU), cross-attention / no-hooks, and
ours / diffusers.
Usage: python bench/bench_engine.py [--model bundled] [--n 8] [--steps 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time_interleaved(fns, repeats: int) -> list[float]:
    """Median seconds per function, running them in turn (A B C A B C …) so that any load from
    elsewhere on a shared machine falls on all of them alike, not on whichever ran last."""
    for fn in fns:
        fn()  # warm-up (allocations, first-call dispatch)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bundled")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default=None)
    args = p.parse_args()

    from explorer.cli import quiet_libraries

    quiet_libraries()
    from explorer.engine import generate, load_model
    from explorer.shapes.world import Scene

    model = load_model(args.model, device=args.device)
    scenes = [Scene.from_seed(500_000 + i) for i in range(args.n)]
    prompts = [s.prompt for s in scenes]
    seeds = [s.seed for s in scenes]
    guidance = float(model.defaults["guidance"])
    blocks = model.defaults["blocks"]
    sink = []

    def keep(info):
        # What a real consumer does with a capture: hold a reference (the store writes it).
        sink.append(info.captures)
        if len(sink) > 2:
            sink.pop(0)

    def ours_plain():
        generate(model, prompts, seeds, args.steps, guidance)

    def ours_capture():
        generate(model, prompts, seeds, args.steps, guidance, capture=blocks, on_step=keep)

    def ours_attention():
        generate(model, prompts, seeds, args.steps, guidance, cross_attention=blocks, on_step=keep)

    def diffusers_plain():
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        model.pipe(
            prompts,
            num_inference_steps=args.steps,
            guidance_scale=guidance,
            generator=gens,
            height=model.resolution,
            width=model.resolution,
            output_type="np",
        )

    t_diff, t_plain, t_cap, t_attn = _time_interleaved(
        [diffusers_plain, ours_plain, ours_capture, ours_attention], args.repeats
    )
    print(
        f"model {model.name} ({model.device}), {args.n} images × {args.steps} steps, "
        f"guidance {guidance:g}, threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print(f"{'diffusers StableDiffusionPipeline':<40}{t_diff:8.3f} s")
    print(
        f"{'explorer loop, no hooks':<40}{t_plain:8.3f} s   ratio vs diffusers {t_plain / t_diff:.3f}"
    )
    print(
        f"{'explorer loop, capture ' + str(len(blocks)) + ' blocks':<40}{t_cap:8.3f} s   "
        f"capture overhead {t_cap / t_plain:.3f} (target ≤ 1.10)"
    )
    print(
        f"{'explorer loop, cross-attention maps':<40}{t_attn:8.3f} s   "
        f"cross-attention overhead {t_attn / t_plain:.3f}"
    )
    print(
        f"per image: {t_plain / args.n * 1000:.0f} ms; per step (batch of {args.n}): "
        f"{t_plain / args.steps * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
