"""Seconds per kimg of StyleGAN2 training on the current Keras backend (KERAS_BACKEND).

Runs NVlabs' schedule (G main every step, path length every 4, D main, R1 every 16, EMA) on
random "real" images and reports steady-state s/kimg, images/s, parameter counts, compile
time and peak memory (device memory where the backend reports it, else the process's RSS).

CPU (the default: 32x32, small widths):
    KERAS_BACKEND=jax python benchmarks/stylegan2_step.py
    KERAS_BACKEND=jax python benchmarks/stylegan2_step.py --precision mixed_bfloat16
GPU (the reference setting; NVlabs' PyTorch code: 6.6 s/kimg on an H200):
    KERAS_BACKEND=jax python benchmarks/stylegan2_step.py --preset e --resolution 256 \\
        --channels 3 --batch 32 --precision mixed_bfloat16 --iters 64 --warmup 16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="custom", choices=["e", "f", "custom"])
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--channel-base", type=int, default=1024, help="custom widths only")
    p.add_argument("--channel-max", type=int, default=64, help="custom widths only")
    p.add_argument("--z-dim", type=int, default=None, help="default: 512 for e/f, 64 for custom")
    p.add_argument("--mapping-layers", type=int, default=None, help="default: 8 for e/f, 2 for custom")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    p.add_argument("--iters", type=int, default=32, help="timed iterations (a multiple of 16 keeps the schedule fair)")
    p.add_argument("--warmup", type=int, default=16, help="untimed iterations (compilation happens here)")
    p.add_argument("--json", action="store_true", help="print one JSON line only")
    args = p.parse_args(argv)

    import keras

    from busgan.config import GanConfig
    from busgan.stylegan2 import autodiff
    from busgan.stylegan2.networks import build_discriminator, build_generator, count_params
    from busgan.stylegan2.steps import init_state, make_phases

    custom = args.preset == "custom"
    cfg = GanConfig(preset=args.preset, resolution=args.resolution, channels=args.channels,
                    channel_base=args.channel_base, channel_max=args.channel_max,
                    z_dim=args.z_dim or (64 if custom else 512),
                    mapping_layers=args.mapping_layers or (2 if custom else 8),
                    batch_size=args.batch, precision=args.precision, gamma=10.0)
    G, D = build_generator(cfg), build_discriminator(cfg)
    phases = make_phases(G, D, cfg)
    state = init_state(G, D)
    rng = np.random.default_rng(0)
    reals = [keras.ops.convert_to_tensor(rng.uniform(-1, 1, (args.batch, args.resolution, args.resolution,
                                                               args.channels)).astype("float32"))
             for _ in range(4)]

    def iteration(state, i):
        x, seed = reals[i % 4], autodiff.seed_tensor(i)
        state, _ = phases.g_main(state, x, seed)
        if i % phases.g_reg_interval == 0:
            state, _ = phases.g_reg(state, x, seed)
        state, logs = phases.d_main(state, x, seed)
        if i % phases.d_reg_interval == 0:
            state, _ = phases.d_reg(state, x, seed)
        return phases.ema(state, float(i * args.batch)), logs  # images shown before this step

    t0 = time.perf_counter()
    for i in range(args.warmup):
        state, logs = iteration(state, i)
    float(logs["loss_d"])  # wait for the device
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.iters):
        state, logs = iteration(state, i)
    float(logs["loss_d"])
    dt = time.perf_counter() - t0
    images = args.iters * args.batch
    dev = autodiff.device_info()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if sys.platform != "darwin" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "backend": keras.backend.backend(), "device": dev["device"], "preset": args.preset,
        "resolution": args.resolution, "channels": args.channels, "batch": args.batch,
        "precision": args.precision, "G_params": count_params(G), "D_params": count_params(D),
        "s_per_kimg": round(dt / images * 1000.0, 3), "images_per_s": round(images / dt, 2),
        "warmup_s": round(warm, 1), "peak_device_bytes": dev["peak_bytes"], "peak_rss_bytes": rss,
        "loss_d": float(logs["loss_d"]),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
