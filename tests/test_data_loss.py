"""Issue 11, data loss: busgan deletes or replaces only what it wrote itself.

Every case puts user files where busgan writes, runs the command, and checks that each user
file is still there byte for byte (and that refusals are one line naming the fix).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from busgan.cli import main
from busgan.config import Config, DataConfig, PhantomConfig, SelectConfig
from busgan.data import phantom as ph
from busgan.data import prepare as prep
from busgan.errors import BusganError
from busgan.fileio import TEMP_NAME, TEMP_PREFIX, atomic_path, remove_stale_temporaries, temp_name
from busgan.pipeline import validate_paths

TINY = str(Path(__file__).parent / "configs" / "tiny.toml")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def png(path: Path, seed: int, value: int | None = None) -> Path:
    """A small distinct grey PNG (flat ``value`` if given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.full((32, 32), value, np.uint8) if value is not None else
              np.random.default_rng(seed).integers(0, 256, (32, 32), dtype=np.uint8))
    Image.fromarray(pixels, "L").save(path)
    return path


def source_tree(root: Path, per_class: int = 4) -> Path:
    for c, name in enumerate(("benign", "malignant")):
        for i in range(per_class):
            png(root / name / f"{name}_{i}.png", 100 * c + i)
    return root


def files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_kept(before: dict[str, bytes], root: Path) -> None:
    now = files(root)
    lost = [k for k, v in before.items() if now.get(k) != v]
    assert lost == [], f"user files lost or changed: {lost}"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def run_args(work: Path, source: Path | str) -> list[str]:
    return ["run", TINY, "--work", str(work), "--until", "0", "--set", f"data.source={source}",
            "--set", "data.test_per_class=1", "--set", "phantom.n_per_class=4"]


# --- 1. busgan run / prepare --force never replace a data/ busgan did not write -------------

def test_run_refuses_source_in_work_data_and_keeps_every_image(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "DIR"
    source_tree(work / "data")
    before = files(work)
    assert main(run_args(work, work / "data")) != 0
    err = one_line_error(capsys)
    assert "inside the work directory" in err and "--work" in err
    assert_kept(before, work)


def test_run_never_replaces_a_data_folder_of_user_images(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    src = source_tree(tmp_path / "src")
    work = tmp_path / "DIR"
    source_tree(work / "data", per_class=2)  # the user's own images, not prepared by busgan
    (work / "data" / "notes.txt").write_text("mine")
    before = files(work)
    assert main(run_args(work, src)) != 0  # stage 0 prepares with force: refused all the same
    err = one_line_error(capsys)
    assert "not prepared data" in err and "choose another --work" in err
    assert_kept(before, work)


def test_force_refuses_a_user_file_added_to_prepared_data(tmp_path: Path) -> None:
    src = source_tree(tmp_path / "src")
    work = tmp_path / "w"
    cfg = DataConfig(source=str(src), size=32, test_per_class=1, val_fraction=0.0, workers=1)
    prep.prepare(cfg, work)
    png(work / "data/train/benign/mine.png", 7)
    (work / "data/.DS_Store").write_bytes(b"finder")  # a file browser's cache does not count
    before = files(work)
    bigger = dataclasses.replace(cfg, size=40)
    with pytest.raises(BusganError, match=r"mine\.png: was not written by busgan prepare.*move it out") as e:
        prep.prepare(bigger, work, force=True)
    assert "\n" not in str(e.value)
    assert_kept(before, work)
    (work / "data/train/benign/mine.png").unlink()
    assert prep.prepare(bigger, work, force=True)["config"]["size"] == 40  # its own data: replaced


def test_validate_paths_refuses_overlap_before_any_work(tmp_path: Path) -> None:
    cfg = Config()
    validate_paths(cfg, tmp_path / "w")  # phantom: generated under WORK/phantom, fine
    cfg.data.source = str(source_tree(tmp_path / "w" / "images"))
    with pytest.raises(BusganError, match="source folder is inside the work directory"):
        validate_paths(cfg, tmp_path / "w")
    with pytest.raises(BusganError, match="work directory is inside the source folder"):
        validate_paths(cfg, tmp_path / "w" / "images" / "benign" / "out")
    validate_paths(cfg, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


# --- 2. clean-up touches only busgan's own temporaries -------------------------------------

def test_cleanup_removes_only_busgan_temporaries(tmp_path: Path) -> None:
    user = {".env.template": b"A=1", ".bashrc.original": b"alias", "sub/.config.defaults": b"x",
            "sub/.model.keras.ab12_x9z.tmp": b"old-looking", "sub/.p.partial/a.png": b"p",
            "sub/.data.tmp-abc12345/keep.txt": b"k", "notes.busgan-tmp-x": b"n"}
    for rel, data in user.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    stale_file = tmp_path / "sub" / temp_name("model.keras.ab12_x9z.keras")
    stale_dir = tmp_path / temp_name("data.new-k3j4h5g6")
    resumable = tmp_path / temp_name("phantom.partial")
    for p in (stale_dir / "train", resumable / "benign"):
        p.mkdir(parents=True)
    stale_file.write_bytes(b"half")
    (stale_dir / "train" / "a.png").write_bytes(b"half")
    (resumable / "benign" / "done.png").write_bytes(b"done")
    (resumable / temp_name("b.png.abcdefgh.png")).write_bytes(b"half")
    before = files(tmp_path)
    assert remove_stale_temporaries(tmp_path) == 3
    assert not stale_file.exists() and not stale_dir.exists()
    assert (resumable / "benign" / "done.png").read_bytes() == b"done"  # the phantom resumes from it
    assert_kept({k: v for k, v in before.items() if k in user}, tmp_path)


def test_temporaries_carry_the_busgan_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with atomic_path(tmp_path / ".env") as tmp:
        assert tmp.name.startswith(TEMP_PREFIX) and TEMP_NAME.match(tmp.name)
        tmp.write_text("A=1")
    seen: list[Path] = []

    def failing_build(cfg: object, found: object, tmp: Path, *rest: object) -> None:
        seen.append(tmp)
        raise BusganError("stop")

    monkeypatch.setattr(prep, "_build", failing_build)
    cfg = DataConfig(source=str(source_tree(tmp_path / "src")), size=32, test_per_class=1, workers=1)
    with pytest.raises(BusganError, match="stop"):
        prep.prepare(cfg, tmp_path / "w")
    assert seen[0].name.startswith(TEMP_PREFIX) and not seen[0].exists()


def test_run_keeps_dotfiles_that_look_like_temporaries(tmp_path: Path) -> None:
    work = tmp_path / "w"
    for rel in (".env.template", ".bashrc.original", "sub/.config.defaults", "data.csv.abcdefgh.tmp"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(rel.encode() * 3)
    before = files(work)
    assert main(run_args(work, source_tree(tmp_path / "src"))) == 0
    assert_kept(before, work)
    assert (work / "data" / "manifest.csv").is_file()


def test_phantom_swap_keeps_user_folders_named_like_its_old_temporaries(tmp_path: Path) -> None:
    for name in (".p.old", ".p.partial"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text(name)
    before = files(tmp_path)
    ph.generate_phantom(tmp_path / "p", PhantomConfig(n_per_class=1, size=32, workers=1))
    ph.generate_phantom(tmp_path / "p", PhantomConfig(n_per_class=2, size=32, workers=1))  # swapped
    assert (tmp_path / "p/malignant/malignant_00001.png").is_file()
    assert_kept(before, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


# --- 3. busgan select --out: only what a selection wrote ------------------------------------

@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Selection with a stand-in classifier: P(malignant) = mean brightness (no Keras model)."""
    from busgan.classifier import select as cselect

    def predict(model: object, paths: list[Path], batch_size: int) -> np.ndarray:
        means = [np.asarray(Image.open(p), np.float64).mean() / 255 for p in paths]
        return np.array([[1 - m, m] for m in means])

    monkeypatch.setattr(cselect, "load_classifier", lambda path: object())
    monkeypatch.setattr(cselect, "predict_files", predict)
    model = tmp_path / "model.keras"
    model.write_bytes(b"stand-in")
    return model


def generated(root: Path) -> Path:
    for name, values in {"benign": [10, 60, 200], "malignant": [100, 150, 250]}.items():
        for v in values:
            png(root / name / f"{v:03d}.png", 0, v)
    return root


def test_select_refuses_a_folder_of_other_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = generated(tmp_path / "gen")
    out = tmp_path / "mine"
    png(out / "benign" / "010.png", 1)  # same name as a generated image: still the user's
    png(out / "malignant" / "x.png", 2)
    (out / "scores.csv").write_text("my own spreadsheet\n")
    before = files(out)
    assert main(["select", "--model", str(tmp_path / "absent.keras"), "--generated", str(gen),
                 "--out", str(out)]) != 0
    assert "not written by busgan select" in one_line_error(capsys)
    assert_kept(before, out)
    assert files(out) == before


def test_select_rerun_removes_only_images_it_recorded(tmp_path: Path, fake_model: Path) -> None:
    from busgan.classifier.select import select_images

    gen, out = generated(tmp_path / "gen"), tmp_path / "sel"
    select_images(fake_model, gen, out, SelectConfig())
    assert sorted(p.name for p in (out / "benign").iterdir()) == ["010.png", "060.png"]
    png(out / "benign" / "mine.png", 3)  # the user adds an image to busgan's output
    before = files(out)
    with pytest.raises(BusganError, match=r"mine\.png: was not written by busgan select"):
        select_images(fake_model, gen, out, SelectConfig(max_per_class=1, keep="top"))
    assert_kept(before, out)
    os.replace(out / "benign" / "mine.png", tmp_path / "mine.png")
    (out / "notes.txt").write_text("mine")  # not an image of a class folder: left alone
    select_images(fake_model, gen, out, SelectConfig(max_per_class=1, keep="top"))
    assert sorted(p.name for p in (out / "benign").iterdir()) == ["010.png"]  # 060 was its own
    assert (out / "notes.txt").read_text() == "mine"


def test_select_refuses_out_and_generated_inside_one_another(tmp_path: Path) -> None:
    from busgan.classifier.select import check_out

    gen = generated(tmp_path / "w" / "gen")
    for out in (gen / "sel", tmp_path / "w"):
        with pytest.raises(BusganError, match="inside one another"):
            check_out(out, gen)


# --- 4. prepare refuses an output inside its source (and a source inside its output) -------

def test_prepare_refuses_work_inside_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = source_tree(tmp_path / "SRC")
    before = files(src)
    dirs = sorted(p for p in src.rglob("*"))
    assert main(["prepare", "--work", str(src / "benign" / "out"), "--source", str(src), "--force",
                 "--size", "32", "--test-per-class", "1"]) != 0
    assert "work directory is inside the source folder" in one_line_error(capsys)
    assert files(src) == before and sorted(src.rglob("*")) == dirs  # nothing imported, nothing made


def test_prepare_refuses_source_inside_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "W"
    source_tree(work / "data")
    before = files(work)
    assert main(["prepare", "--work", str(work), "--source", str(work / "data"), "--force",
                 "--size", "32", "--test-per-class", "1"]) != 0
    assert "source folder is inside the work directory" in one_line_error(capsys)
    assert files(work) == before


def test_a_stage_command_refuses_a_work_directory_in_use(tmp_path: Path) -> None:
    """Issue 11 point 6 for stage commands: `busgan prepare --work W` while W is locked."""
    import subprocess
    import sys
    import time as _time
    work = tmp_path / "w"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from busgan.lock import folder_lock\n"
        f"with folder_lock(Path({str(work)!r})):\n    print('locked', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        from busgan.cli import main
        t0 = _time.time()
        code = main(["prepare", "--work", str(work), "--phantom-n-per-class", "4", "--phantom-size", "32",
                     "--size", "32"])
        assert code == 2 and _time.time() - t0 < 10  # refused at once, not after waiting
    finally:
        holder.kill()
        holder.wait()
    assert list(work.iterdir()) == []  # nothing written: the lock is on the folder itself
