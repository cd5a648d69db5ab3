"""Generation to disk against the generator's own speed, and generate-and-select in one pass.

Prints, in one run on one machine (issue 14, points 1 and 2), images/s of:
  generator alone     batches rendered and copied to host memory, nothing converted or written
  encoding alone      rendered batches -> uint8 -> PNG -> atomic file, on 1 worker and on all
  end to end          ``generate.write_images`` (the two overlapped: what ``busgan generate`` does)
  ratio               end to end / min(generator alone, encoding on all workers); target >= 0.9
and with ``--fused``: ``generate_and_select`` of ``--fused-n`` seeds of one class (a random
generator and a random classifier biased to accept every image, so every image is encoded:
the slowest case), with the time for 25,000 images (the H200 target: <= 30 s).

Random weights: speed does not depend on them. Widths, resolution, batch and psi come from
``--config`` (default configs/demo.toml: its GAN widths at 32x32) unless overridden.
    KERAS_BACKEND=jax python benchmarks/generate_speed.py
    KERAS_BACKEND=jax python benchmarks/generate_speed.py --resolution 256 --n 256
    KERAS_BACKEND=jax python benchmarks/generate_speed.py --preset e --resolution 256 \\
        --truncation 1.6 --batch 64 --n 8000 --fused --fused-n 25000 --classifier-config configs/paper.toml
``--row`` prints one Markdown table row per measurement (benchmarks/gpu_session.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("BUSGAN_NO_PROGRESS", "1")

import numpy as np  # noqa: E402


def gan_config(a: argparse.Namespace):
    from busgan.config import load_config
    cfg = load_config(a.config)
    gan, g = cfg.gan, cfg.generate
    custom = (a.preset or gan.preset) == "custom"
    changes = {k: v for k, v in (("preset", a.preset), ("resolution", a.resolution),
                                 ("channels", a.channels), ("precision", a.precision)) if v is not None}
    if a.preset in ("e", "f"):  # NVlabs' latent size and mapping depth, as train-gan's presets
        changes.update(z_dim=512, mapping_layers=8)
    gan = dataclasses.replace(gan, **changes)
    batch = a.batch or g.batch_size
    psi = g.truncation if a.truncation is None else a.truncation
    label = (f"{'custom widths ' + str(gan.channel_base) + '/' + str(gan.channel_max) if custom else 'config-' + gan.preset}"
             f" {gan.resolution}x{gan.resolution}x{gan.channels}, psi {psi}, batch {batch}")
    return cfg, gan, batch, psi, label


def generator_alone(render, batch: int, n: int) -> float:
    """Rendering pipelined as write_images does (the next batch dispatched before the last is
    copied back), with the host copy: what the workers receive."""
    seeds = [np.arange(i, i + batch) for i in range(0, n, batch)]
    t0 = time.perf_counter()
    last = None
    for s in seeds:
        out = render(s)
        if last is not None:
            np.asarray(last)
        last = out
    np.asarray(last)
    return len(seeds) * batch / (time.perf_counter() - t0)


def encoding_alone(batches: list[np.ndarray], n: int, workers: int, folder: Path) -> float:
    from busgan.stylegan2 import generate as gen
    batch = len(batches[0])
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    with gen.WorkerPool(workers, limit=workers + 2) as pool:
        for k, start in enumerate(range(0, n, batch)):
            pool.submit(gen.save_batch, batches[k % len(batches)], list(range(start, start + batch)), folder, "png")
    rate = len(range(0, n, batch)) * batch / (time.perf_counter() - t0)
    shutil.rmtree(folder)
    return rate


def end_to_end(render, batch: int, n: int, workers: int, folder: Path) -> float:
    from busgan.stylegan2 import generate as gen
    t0 = time.perf_counter()
    gen.write_images(render, range(n), folder, batch, workers=workers)
    rate = n / (time.perf_counter() - t0)
    shutil.rmtree(folder)
    return rate


def fused(cfg, gan, batch: int, psi: float, n: int, workers: int, root: Path, classifier_config: str | None,
          compare: bool):
    """Seconds and acceptance of generate_and_select on n seeds of one class."""
    from busgan.classifier.model import build_classifier, output_layer_name
    from busgan.config import load_config
    from busgan.generate_select import generate_and_select
    from busgan.stylegan2 import generate as gen, snapshot as snap

    ccfg = load_config(classifier_config).classifier if classifier_config else cfg.classifier
    ccfg = dataclasses.replace(ccfg, weights="none")
    model = build_classifier(ccfg)
    head = model.get_layer(output_layer_name())
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.array([5.0, -5.0], bias.dtype)])  # accept all benign
    root.mkdir(parents=True, exist_ok=True)
    model_path = root / "model.keras"
    model.save(model_path)
    from busgan.stylegan2.networks import build_generator
    G = build_generator(gan)
    state = {"g_ema": [np.asarray(v.value) for v in G.trainable_variables],
             "g_ema_nt": [np.asarray(v.value) for v in G.non_trainable_variables]}
    snapshot = snap.save_snapshot(root / "snapshot-000000000.npz", state,
                                  {"gan": dataclasses.asdict(gan), "nimg": 0})
    def run(seeds, out):
        return generate_and_select(model_path, {"benign": snapshot}, {"benign": root / out / "benign"},
                                   root / f"{out}-sel", {"benign": seeds}, psi, batch, "png",
                                   cfg.select, workers=workers)
    run(range(batch), "warm")  # compilation of the generator and the classifier, not timed
    t0 = time.perf_counter()
    summary = run(range(1, n + 1), "gen")
    seconds = time.perf_counter() - t0
    two_pass = None
    if compare:  # the two stages as before: every image written, then read back and scored
        from busgan.classifier.select import select_images
        t0 = time.perf_counter()
        gen.generate_images(snapshot, root / "two" / "benign", range(1, n + 1), psi, batch, workers=workers)
        select_images(model_path, root / "two", root / "two-sel", cfg.select)
        two_pass = time.perf_counter() - t0
    return seconds, two_pass, summary["benign"]["acceptance_rate"], ccfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.toml", help="widths, resolution, batch, psi")
    ap.add_argument("--preset", choices=("e", "f", "custom"))
    ap.add_argument("--resolution", type=int)
    ap.add_argument("--channels", type=int)
    ap.add_argument("--precision", choices=("float32", "mixed_bfloat16"))
    ap.add_argument("--batch", type=int)
    ap.add_argument("--truncation", type=float)
    ap.add_argument("--n", type=int, default=2048, help="images per measurement")
    ap.add_argument("--workers", type=int, default=None, help="default: every core")
    ap.add_argument("--fused", action="store_true", help="also time generate-and-select")
    ap.add_argument("--fused-n", type=int, default=None, help="seeds for --fused (default: --n)")
    ap.add_argument("--classifier-config", default=None, help="for --fused (default: --config)")
    ap.add_argument("--compare", action="store_true", help="with --fused: also time generate, then select")
    ap.add_argument("--tmp", default=None, help="folder for the images (default: the system's)")
    ap.add_argument("--row", action="store_true", help="one Markdown table row per measurement")
    a = ap.parse_args()

    import keras

    from busgan.stylegan2 import autodiff, generate as gen
    from busgan.stylegan2.networks import build_generator

    cfg, gan, batch, psi, label = gan_config(a)
    workers = a.workers or gen.default_workers()
    n = max(batch, a.n // batch * batch)
    G = build_generator(gan)
    ema = ([v.value for v in G.trainable_variables], [v.value for v in G.non_trainable_variables])
    render = gen.device_renderer(G, ema, gan.z_dim, psi)
    t0 = time.perf_counter()
    np.asarray(render(np.arange(batch)))
    compile_s = time.perf_counter() - t0
    device = autodiff.device_info()["device"]
    batches = [np.asarray(render(np.arange(k * batch, (k + 1) * batch))) for k in range(4)]
    root = Path(tempfile.mkdtemp(prefix="busgan-genspeed-", dir=a.tmp))
    try:
        gen_rate = generator_alone(render, batch, n)
        enc1 = encoding_alone(batches, max(batch, n // 4 // batch * batch), 1, root / "enc1")
        enc = encoding_alone(batches, n, workers, root / "enc")
        e2e = end_to_end(render, batch, n, workers, root / "e2e")
        ratio = e2e / min(gen_rate, enc)
        # where the generator runs on the same CPU cores as the encoders (no accelerator), the
        # two cannot overlap: the best end to end is then one after the other, 1 / (1/g + 1/e)
        shared = e2e * (1 / gen_rate + 1 / enc)
        size_kib = np.mean([len(_png(im)) for im in gen.as_uint8(batches[0])[:16]]) / 1024
        if a.row:
            print(f"| generate to PNG | {device}, {label}, {workers} workers, {n} images | generator {gen_rate:,.0f}, "
                  f"encoding {enc:,.0f} ({enc1:,.0f} on 1 worker), end to end **{e2e:,.0f}** images/s; "
                  f"ratio {ratio:.2f} (against the CPU-shared bound: {shared:.2f}) | ratio >= 0.9 |")
        else:
            print(f"backend {keras.backend.backend()}, {device}; {label}; {workers} workers; "
                  f"{n} images per measurement; compile {compile_s:.1f} s; PNG level "
                  f"{gen.PNG_COMPRESS_LEVEL}, {size_kib:.1f} KiB per image")
            print(f"{'generator alone':>28}: {gen_rate:9.1f} images/s")
            print(f"{'encoding alone, 1 worker':>28}: {enc1:9.1f} images/s")
            print(f"{f'encoding alone, {workers} workers':>28}: {enc:9.1f} images/s")
            print(f"{'end to end':>28}: {e2e:9.1f} images/s")
            print(f"{'ratio e2e / min(gen, enc)':>28}: {ratio:9.2f}   (target >= 0.9 where the generator "
                  "runs on an accelerator)")
            print(f"{'e2e x (1/gen + 1/enc)':>28}: {shared:9.2f}   (1.0 = the bound where generator and "
                  "encoders share the CPU cores)")
        if a.fused:
            fn = a.fused_n or n
            seconds, two_pass, rate, ccfg = fused(cfg, gan, batch, psi, fn, workers, root / "fused",
                                                  a.classifier_config, a.compare)
            per_25k = seconds / fn * 25000
            what = f"{ccfg.backbone} {ccfg.input_size}x{ccfg.input_size}"
            versus = "" if two_pass is None else f"; generate then select: {two_pass:.1f} s"
            if a.row:
                print(f"| generate + select, one pass | {device}, {label}, classifier {what}, {fn:,} seeds, "
                      f"acceptance {rate:.0%} | {seconds:.1f} s ({fn / seconds:,.0f} images/s); 25,000: "
                      f"**{per_25k:.1f} s**{versus} | <= 30 s for 25,000 |")
            else:
                print(f"{'generate+select, one pass':>28}: {fn / seconds:9.1f} images/s ({fn} seeds in "
                      f"{seconds:.1f} s, classifier {what}, acceptance {rate:.0%}); 25,000 in {per_25k:.1f} s")
                if two_pass is not None:
                    print(f"{'generate, then select':>28}: {fn / two_pass:9.1f} images/s ({two_pass:.1f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    from busgan.stylegan2 import generate as gen
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buf, format="PNG", compress_level=gen.PNG_COMPRESS_LEVEL)
    return buf.getvalue()


if __name__ == "__main__":
    main()
