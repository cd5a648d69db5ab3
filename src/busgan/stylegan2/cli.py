"""``busgan train-gan``, ``busgan generate`` and ``busgan import-nvlabs``: thin shells over
``train_gan``, ``generate_images`` and ``nvlabs_import.import_snapshot``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from busgan import CLASSES
from busgan.cli import add_command, add_out_option
from busgan.config import add_config_args, config_from_args

NOISE_MODES = ("const", "random", "none")


def register(sub: Any) -> None:
    """Add ``train-gan`` and ``generate``."""
    p = add_command(
        sub, "train-gan", help="train one class's StyleGAN2 (stage 2)",
        description="Train a StyleGAN2 on one class's images; snapshots, FID/KID per snapshot, "
                    "best.json = lowest FID. Rerun the same command to resume. One line per tick "
                    "(losses, s/kimg, ADA p); TensorBoard events in OUT/logs (docs/stylegan2.md).",
        example=["busgan train-gan --data runs/demo/data/train/benign --out gans/benign --config configs/demo.toml",
                 "busgan train-gan --data imgs/malignant --out gans/malignant --kimg 5000 --augment ada"])
    p.add_argument("--data", type=Path, required=True,
                   help="folder of one class's images (conditional GAN: a folder of benign/ and malignant/)")
    add_out_option(p, "output folder (snapshots/, fid.csv, best.json, ...)", type=Path, required=True)
    p.add_argument("--resume", choices=("auto", "none"), default="auto",
                   help="auto: continue from the newest snapshot in --out; none: --out must hold none")
    p.add_argument("--features", type=Path, default=None,
                   help="FID features: a busgan classifier model.keras or InceptionV3 notop .h5 "
                        "(default: offline pixel features, see docs/stylegan2.md)")
    p.add_argument("--devices", type=int, default=None, help="local devices to use (JAX; default all)")
    p.add_argument("--init-from", type=Path, default=None, metavar="SNAPSHOT",
                   help="start from the G, D and G_ema weights of this snapshot or train-gan folder "
                        "(same architecture) instead of random ones; ignored when --out has snapshots")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="N processes on this machine training data-parallel through jax.distributed "
                        "(one GPU each where there are GPUs); for several machines set BUSGAN_COORDINATOR, "
                        "BUSGAN_NUM_PROCESSES and BUSGAN_PROCESS_ID instead (docs/stylegan2.md)")
    add_config_args(p, "gan")  # --preset e|f|custom, --resolution, ...
    p.set_defaults(func=_train)

    g = add_command(
        sub, "generate", help="images from a trained generator, one file per seed (stage 3)",
        description="Write seedNNNNNN.png per seed (existing files skipped) with the EMA generator, "
                    "and a grid of the first 64 seeds beside the folder (OUT-grid.png, outside any "
                    "folder a later stage scans), whose path it prints. The latent of seed s is "
                    "RandomState(s).randn(z_dim), as in NVlabs' generate.py.",
        example=["busgan generate --network gans/benign --out gen/benign --seeds 1-1000 --trunc 1.0",
                 "busgan generate --network gans/benign/best --outdir gen/b --seeds 0-63 --noise-mode random"])
    g.add_argument("--network", type=Path, required=True,
                   help="a snapshot-*.npz, or a train-gan --out folder (or FOLDER/best) for its best snapshot")
    add_out_option(g, "output folder of the per-seed images", type=Path, required=True)
    g.add_argument("--seeds", default=None, help="e.g. 1-25000 or 1,5,7-9 (default: 1..n-per-class)")
    g.add_argument("--select", metavar="MODEL", type=Path, default=None,
                   help="score every image in memory with this real-trained model.keras and write to "
                        "--out only those it assigns to --class (and the first 500 seeds); the "
                        "selection (kept images, scores.csv of every image) goes to --selected")
    g.add_argument("--class", dest="image_class", choices=CLASSES, default=None,
                   help="the class a conditional network draws (required for one); with --select: "
                        "the class the images are selected for")
    g.add_argument("--selected", metavar="DIR", type=Path, default=None,
                   help="with --select: the selection folder (new, empty, or written by an earlier "
                        "selection); the [select] keys come from --config / --set")
    g.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                   help="per-pixel noise: const (the generator's fixed maps, busgan's default and what "
                        "the pipeline uses), random (drawn from each image's seed), none")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="threads encoding the images (0 = one per CPU core, as in every command)")
    g.add_argument("--processes", type=int, default=1, metavar="N",
                   help="N processes on this machine, each rendering its share of the seeds into --out "
                        "(one GPU each where there are GPUs); for several machines set the BUSGAN_* "
                        "variables instead (docs/stylegan2.md)")
    add_config_args(g, "generate")  # --truncation, --batch-size, --format
    g.add_argument("--trunc", dest="cfg__generate__truncation", type=float, default=None, metavar="PSI",
                   help="the same as --truncation (NVlabs' spelling)")
    g.set_defaults(func=_generate)

    e = add_command(
        sub, "export", help="the EMA generator of a snapshot as a .keras model or a .npz of named arrays",
        description="Write the snapshot's EMA generator for use outside busgan. FILE.keras: a Keras "
                    "model z [N, z_dim] -> images [N, R, R, C] in [-1, 1], truncation and noise fixed; "
                    "load it with `import busgan.stylegan2.export` then "
                    "keras.saving.load_model(FILE, safe_mode=True) (no code runs). FILE.npz: one array "
                    "per generator variable under its layer name, and __meta__ (JSON: the [gan] "
                    "config). Layout: docs/stylegan2.md.",
        example=["busgan export gans/benign --out benign-G.keras --trunc 1.0",
                 "busgan export gans/benign/snapshots/snapshot-000006016.npz --out G.npz"])
    e.add_argument("snapshot", type=Path, metavar="SNAPSHOT",
                   help="a snapshot-*.npz, or a train-gan --out folder for its best snapshot")
    add_out_option(e, "the file to write: .keras or .npz", type=Path, required=True, metavar="FILE")
    e.add_argument("--truncation", "--trunc", type=float, default=None, metavar="PSI",
                   help="truncation psi in the .keras model (default: generate.truncation, 1.6, as "
                        "busgan generate)")
    e.add_argument("--noise-mode", choices=("const", "none"), default="const",
                   help="per-pixel noise in the .keras model (default: const, as busgan generate)")
    e.set_defaults(func=_export)

    m = add_command(
        sub, "import-nvlabs", help="a StyleGAN2 pickle trained with NVlabs' code -> a busgan snapshot",
        description="Read a PyTorch StyleGAN2-ADA / stylegan3 --cfg=stylegan2 pickle (G_ema, G, D) or a "
                    "TensorFlow 1 StyleGAN2 network-snapshot-*.pkl (Gs) without running any code from it "
                    "(a restricted reader refuses every global but tensor and array reconstruction), "
                    "and write OUT/snapshots/snapshot-*.npz and OUT/best.json for generate.",
        example=["busgan import-nvlabs network-snapshot-001200.pkl --out gans/benign",
                 "busgan import-nvlabs cond.pkl --out gans/both --classes benign,malignant --no-d"])
    m.add_argument("pkl", type=Path, metavar="PKL", help="the NVlabs network-snapshot-*.pkl")
    add_out_option(m, "new output folder (snapshots/, best.json)", type=Path, required=True)
    m.add_argument("--classes", default=",".join(CLASSES),
                   help="conditional networks: class names in label order (default: %(default)s)")
    m.add_argument("--no-d", action="store_true", help="import the generators only, not the discriminator")
    m.set_defaults(func=_import_nvlabs)


def _train(args: argparse.Namespace) -> int:
    from busgan.stylegan2.distributed import peer_errors, process_layout, run_local_processes
    if args.processes != 1:  # before importing Keras: this process only waits for the workers
        return run_local_processes(args.argv, args.processes)
    from busgan.stylegan2.training import train_gan
    cfg = config_from_args(args).gan
    # ticks go through the logger, so --quiet leaves them out like every progress line
    with peer_errors():
        best = train_gan(args.data, args.out, cfg, resume=args.resume == "auto",
                         feature_model=args.features, devices=args.devices,
                         log=logging.getLogger("busgan.stylegan2.training").info, init_from=args.init_from)
    if process_layout()[0] == 0:  # the other processes of a multi-process run say nothing
        print(f"best snapshot: {best}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from busgan.errors import BusganError
    from busgan.stylegan2.distributed import process_layout, run_local_processes
    from busgan.stylegan2.generate import generate_images, parse_seeds
    several = args.processes != 1 or process_layout()[1] > 1
    if several and (args.select is not None or args.selected is not None):
        raise BusganError("--select runs in one process (its quota spans every seed); "
                          "drop --processes, or unset BUSGAN_NUM_PROCESSES")
    if args.processes != 1:
        return run_local_processes(args.argv, args.processes)
    cfg = config_from_args(args).generate
    # psi and every other key were checked (finite, in range) when the config was loaded;
    # seeds are ranges, checked before any is made, never one list
    seeds = parse_seeds(args.seeds) if args.seeds else range(1, cfg.n_per_class + 1)
    network = args.network
    if network.name == "best" and not network.exists():
        network = network.parent
    if args.select is not None or args.selected is not None:
        return _generate_select(args, network, seeds)

    def make(part: Any) -> int:  # these seeds' images; no seeds: only claims the folder
        if args.noise_mode == "const":
            return generate_images(network, args.out, part, cfg.truncation, cfg.batch_size, cfg.format,
                                   workers=args.workers, image_class=args.image_class)
        return _generate_with_noise(network, args.out, part, cfg.truncation, cfg.batch_size,
                                    cfg.format, args.noise_mode, args.workers, args.image_class)
    n = _in_processes(make, seeds, args.out, cfg.format)
    grid = args.out.with_name(args.out.name + "-grid.png")  # where generate_images puts it
    if process_layout()[0] == 0:  # the other processes of a multi-process run say nothing
        print(f"{n} images in {args.out}; grid of the first {min(n, 64)}: {grid}")
    return 0


def _in_processes(make: Any, seeds: Any, out: Path, fmt: str) -> int:
    """``make(seeds)``; with several processes (BUSGAN_* set), each makes its share into the same
    folder. Process 0 claims the folder first (deleting a stale generator's images) and draws the
    grid of the first seeds last, so no process deletes or overwrites another's files."""
    import itertools

    from busgan.stylegan2 import distributed as dist
    from busgan.stylegan2.generate import save_grid
    index, count = dist.process_layout()
    if count == 1:
        return make(seeds)
    with dist.peer_errors():
        dist.init_distributed()  # for the barriers only: rendering needs no collective
        if index == 0:
            make([])
        dist.barrier("generate: folder claimed")
        make(dist.process_share(seeds, index, count))
        dist.barrier("generate: every share written")
    if index == 0:
        save_grid(out, itertools.islice(seeds, 64), fmt, out.with_name(out.name + "-grid.png"))
    return len(seeds)


def _generate_select(args: argparse.Namespace, network: Path, seeds: Any) -> int:
    """``busgan generate --select MODEL --class C --selected DIR``: the fused pass."""
    from busgan.errors import BusganError
    from busgan.generate_select import generate_and_select
    if args.select is None or args.image_class is None or args.selected is None:
        raise BusganError("busgan generate: --select MODEL, --class CLASS and --selected DIR go "
                          "together; give all three (or none, to write every image)")
    cfg = config_from_args(args)
    c = args.image_class
    summary = generate_and_select(args.select, {c: network}, {c: args.out}, args.selected, {c: seeds},
                                  cfg.generate.truncation, cfg.generate.batch_size, cfg.generate.format,
                                  cfg.select, workers=getattr(args, "workers", 0) or None)
    s = summary.get(c, {})
    print(f"{c}: {s.get('generated', 0)} generated, {s.get('accepted', 0)} accepted and written to "
          f"{args.out}, {s.get('kept', 0)} kept in {args.selected / c}")
    return 0


def _import_nvlabs(args: argparse.Namespace) -> int:
    from busgan.stylegan2.nvlabs_import import import_snapshot
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
    path = import_snapshot(args.pkl, args.out, classes=classes, with_d=not args.no_d)
    print(f"imported {args.pkl} -> {path}")
    return 0


def _generate_with_noise(network: Path, out: Path, seeds: Any, truncation: float, batch_size: int,
                         fmt: str, noise_mode: str, workers: int, image_class: str | None = None) -> int:
    """generate_images with per-pixel noise drawn from each image's seed, or none."""
    import keras

    from busgan.stylegan2 import autodiff, steps
    from busgan.stylegan2 import generate as gen

    gen.check_truncation(truncation)
    snapshot = gen.resolve_network(network)
    gen.claim_output(out, {**gen.made_by(snapshot, truncation, fmt, image_class), "noise_mode": noise_mode})
    G, ema_vars, gan = gen.load_generator(snapshot)
    label = gen.class_label(snapshot, image_class)

    def labels(z: Any) -> Any:
        return None if label is None else gen.one_hot_rows(label, z.shape[0], G.c_dim)
    if noise_mode == "random":  # image i's noise comes from its own seed: batch-independent
        fn = autodiff.compile(lambda z, s: steps.synthesize(G, ema_vars, z, psi=truncation,
                                                            noise_mode="random", seeds=s, c=labels(z)))

        def render(batch: Any) -> Any:
            z = keras.ops.convert_to_tensor(gen.latents(batch, gan.z_dim))
            return fn(z, autodiff.seed_tensor([int(s) for s in batch]))
    else:
        fn = autodiff.compile(lambda z: steps.synthesize(G, ema_vars, z, psi=truncation, noise_mode="none",
                                                         c=labels(z)))

        def render(batch: Any) -> Any:
            return fn(keras.ops.convert_to_tensor(gen.latents(batch, gan.z_dim)))
    grid = out.with_name(out.name + "-grid.png")
    return gen.write_images(render, seeds, out, batch_size, fmt, grid_path=grid, workers=workers)


def _export(args: argparse.Namespace) -> int:
    from busgan.config import GenerateConfig
    from busgan.stylegan2.export import export_generator

    psi = GenerateConfig().truncation if args.truncation is None else args.truncation
    network = args.snapshot
    if network.name == "best" and not network.exists():
        network = network.parent
    out = export_generator(network, args.out, psi, args.noise_mode)
    what = ("a Keras model (load: import busgan.stylegan2.export; keras.saving.load_model)"
            if out.suffix == ".keras" else "named arrays (layout: docs/stylegan2.md)")
    extra = f", truncation {psi:g}, noise {args.noise_mode}" if out.suffix == ".keras" else ""
    print(f"exported the EMA generator to {out}: {what}{extra}")
    return 0
