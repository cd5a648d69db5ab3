"""DICOM input: photometric interpretations, frames, compressed syntaxes, pseudonymised patients."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGLSLossless,  # noqa: E402
                         RLELossless, UltrasoundImageStorage, UltrasoundMultiFrameImageStorage,
                         generate_uid)

from busgan.config import DataConfig  # noqa: E402
from busgan.data.dicom import SALT_FILE, is_dicom_name, load_dicom  # noqa: E402
from busgan.data.prepare import prepare  # noqa: E402
from busgan.errors import BusganError  # noqa: E402

NAME = "Doe^Jane"  # identifying values written into the test files: they must never come out


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUSGAN_NO_PROGRESS", "1")


def header(patient: str | None, burned: str | None = "NO", multi: bool = False,
           ts: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    sop = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.PatientName = NAME
    ds.PatientBirthDate = "19700101"
    if patient is not None:
        ds.PatientID = patient
    if burned is not None:
        ds.BurnedInAnnotation = burned
    return ds


def write(path: Path, arr: np.ndarray, photometric: str = "MONOCHROME2", bits: int | None = None,
          patient: str | None = "MRN-0001", burned: str | None = "NO") -> Path:
    """A native (uncompressed) DICOM file; (frames, rows, cols) arrays become multi-frame files."""
    gray = photometric.startswith("MONO")
    multi = arr.ndim == (3 if gray else 4)
    ds = header(patient, burned, multi)
    ds.set_pixel_data(arr, photometric, bits or arr.dtype.itemsize * 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def smooth(seed: int, shape: tuple[int, ...] = (20, 24)) -> np.ndarray:
    """A smooth 8-bit picture (JPEG keeps it within a few grey levels)."""
    rng = np.random.default_rng(seed)
    channels = shape[2] if len(shape) == 3 else 1
    planes = [np.asarray(Image.fromarray(rng.integers(30, 220, (4, 4), dtype=np.uint8)).resize(
        (shape[1], shape[0]), Image.Resampling.BICUBIC)) for _ in range(channels)]
    return np.stack(planes, -1) if len(shape) == 3 else planes[0]


def pixels(path: Path, frame: int | None = None) -> np.ndarray:
    return np.asarray(load_dicom(path, frame).image).astype(int)


# ---- photometric interpretations, bit depths, transfer syntaxes -----------------------------

def test_monochrome2_and_inverted_monochrome1(tmp_path: Path) -> None:
    arr = smooth(1)
    assert (pixels(write(tmp_path / "m2.dcm", arr)) == arr).all()
    assert (pixels(write(tmp_path / "m1.dcm", arr, "MONOCHROME1")) == 255 - arr).all()  # 0 is white there


def test_high_bit_depths_scale_by_their_stored_bits(tmp_path: Path) -> None:
    # 12 bits stored in 16: v * 255 / 4095, rounded (hand-worked: 2048 -> 127.53 -> 128)
    arr = np.array([[0, 1, 2048, 4095]], dtype=np.uint16)
    assert pixels(write(tmp_path / "u12.dcm", arr, bits=12)).tolist() == [[0, 0, 128, 255]]
    # signed 16-bit: shifted by 32768 first, then / 65535 * 255
    signed = np.array([[-32768, -1, 0, 32767]], dtype=np.int16)
    assert pixels(write(tmp_path / "s16.dcm", signed)).tolist() == [[0, 127, 128, 255]]


def test_rgb_and_ybr_full_become_the_same_rgb(tmp_path: Path) -> None:
    rgb = smooth(2, (20, 24, 3)).astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # DICOM PS3.3 C.7.6.3.1.2, YBR_FULL (the JFIF equations, full range)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    ybr = np.clip(np.round(np.stack([y, cb, cr], -1)), 0, 255).astype(np.uint8)
    assert (pixels(write(tmp_path / "rgb.dcm", rgb.astype(np.uint8), "RGB")) == rgb).all()
    out = pixels(write(tmp_path / "ybr.dcm", ybr, "YBR_FULL"))
    assert out.shape == (20, 24, 3) and np.abs(out - rgb).max() <= 2


def test_native_ybr_full_422_is_upsampled_to_rgb(tmp_path: Path) -> None:
    # uncompressed 4:2:2 stores each pixel pair as Y0 Y1 Cb Cr (PS3.5 8.2.1): a hand-made
    # image with two colours, each filling a pair of columns, so subsampling loses nothing
    rows, cols = 2, 4
    red, blue = (200, 40, 40), (30, 60, 190)

    def ybr(c: tuple[int, int, int]) -> tuple[int, int, int]:
        r, g, b = c
        return (round(0.299 * r + 0.587 * g + 0.114 * b), round(-0.168736 * r - 0.331264 * g + 0.5 * b + 128),
                round(0.5 * r - 0.418688 * g - 0.081312 * b + 128))

    packed = bytearray()
    for _ in range(rows):
        for colour in (red, blue):
            y, cb, cr = ybr(colour)
            packed += bytes([y, y, cb, cr])
    ds = header("MRN-9")
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = rows, cols, 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(packed)
    ds.save_as(tmp_path / "ybr422.dcm", enforce_file_format=True)
    out = pixels(tmp_path / "ybr422.dcm")
    want = np.array([[red, red, blue, blue]] * rows)
    assert out.shape == (rows, cols, 3) and np.abs(out - want).max() <= 2


def test_compressed_syntaxes_with_maintained_decoders(tmp_path: Path) -> None:
    rgb = smooth(3, (16, 24, 3))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95, subsampling=1)  # 4:2:2
    ds = header("MRN-2", ts=JPEGBaseline8Bit)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PlanarConfiguration = 16, 24, 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    assert np.abs(pixels(tmp_path / "jpeg.dcm") - rgb.astype(int)).mean() < 4  # lossy, decoded by Pillow
    gray = smooth(4)
    rle = header("MRN-3")
    rle.set_pixel_data(gray, "MONOCHROME2", 8)
    rle.compress(RLELossless)  # pydicom's own RLE codec
    rle.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    assert (pixels(tmp_path / "rle.dcm") == gray).all()


def test_syntax_without_an_installed_plugin_is_a_clear_error(tmp_path: Path) -> None:
    from pydicom.pixels import get_decoder
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS plugin is installed here")
    ds = header("MRN-4", ts=JPEGLSLossless)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(30) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "ls.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(BusganError, match=r"ls\.dcm: pixel data compressed as JPEG-LS.*pylibjpeg") as e:
        load_dicom(path)
    assert "\n" not in str(e.value)


def test_unsupported_and_broken_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "not.dcm"
    bad.write_bytes(b"hello")
    with pytest.raises(BusganError, match=r"not\.dcm: not a DICOM file"):
        load_dicom(bad)
    ds = header("MRN-5")
    ds.set_pixel_data(smooth(5), "MONOCHROME2", 8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(tmp_path / "pal.dcm", enforce_file_format=True)
    with pytest.raises(BusganError, match=r"pal\.dcm: photometric interpretation PALETTE COLOR"):
        load_dicom(tmp_path / "pal.dcm")
    cut = tmp_path / "cut.dcm"
    whole = write(tmp_path / "whole.dcm", smooth(6)).read_bytes()
    cut.write_bytes(whole[:-100])
    with pytest.raises(BusganError, match=r"cut\.dcm: corrupt or truncated"):
        load_dicom(cut)


def test_which_files_are_dicom(tmp_path: Path) -> None:
    dcm = write(tmp_path / "a.DCM", smooth(7))
    bare = tmp_path / "IM000001"
    bare.write_bytes(dcm.read_bytes())
    text = tmp_path / "README"
    text.write_text("x" * 200)
    dicomdir = tmp_path / "DICOMDIR"
    dicomdir.write_bytes(dcm.read_bytes())
    assert is_dicom_name(dcm) and is_dicom_name(bare)
    assert not is_dicom_name(text) and not is_dicom_name(dicomdir)


# ---- prepare: patients, frames, what is reported, what is never written ---------------------

def cfg(source: Path, **kw: object) -> DataConfig:
    base: dict[str, object] = dict(source=str(source), size=16, test_per_class=2, val_fraction=0.25,
                                   workers=1, near_duplicate_bits=0)
    return DataConfig(**{**base, **kw})  # type: ignore[arg-type]


def dicom_tree(root: Path) -> dict[str, str]:
    """benign/ and malignant/ with 4 patients x 2 files each; returns file -> PatientID."""
    who = {}
    seed = 100
    for cls, patients in (("benign", "ABCD"), ("malignant", "EFGH")):
        for p in patients:
            for k in range(2):
                name = f"{cls}/{p}{k}.dcm"
                write(root / name, smooth(seed), patient=f"MRN-{p}", burned="YES" if name == "benign/A0.dcm" else "NO")
                who[name] = f"MRN-{p}"
                seed += 1
    return who


def rows(work: Path) -> list[dict[str, str]]:
    with open(work / "data" / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def pseudonym(salt: str, patient_id: str) -> str:
    """The documented pseudonym: 'p' + the first 16 hex digits of HMAC-SHA256(salt, issuer NUL id)."""
    return "p" + hmac.new(salt.encode(), f"\x00{patient_id}".encode(), hashlib.sha256).hexdigest()[:16]


def test_prepare_splits_by_pseudonymised_patient(tmp_path: Path) -> None:
    src, work = tmp_path / "src", tmp_path / "w"
    who = dicom_tree(src)
    (src / "benign" / "notes").write_text("not DICOM")  # no suffix, no DICM marker: skipped
    report = header("MRN-A")
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.save_as(src / "benign" / "report.dcm", enforce_file_format=True)  # a text report: no image
    summary = prepare(cfg(src), work)
    salt_file = work / SALT_FILE
    assert oct(salt_file.stat().st_mode & 0o777) == "0o600"
    salt = salt_file.read_text().strip()
    got = rows(work)
    assert len(got) == 16 and summary["patients"] == 8
    for r in got:
        assert r["patient_id"] == pseudonym(salt, who[r["source"]])
    split_of: dict[str, set[str]] = {}
    for r in got:
        split_of.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert summary["counts"]["test"] == {"benign": 2, "malignant": 2}
    d = summary["dicom"]
    assert d["files"] == 16 and d["images"] == 16 and d["without_patient_id"] == 0
    assert d["burned_in_annotation"] == {"YES": 1, "NO": 15, "absent": 0}
    assert d["burned_in_files"] == ["benign/A0.dcm"]
    assert summary["skipped"]["non_images"] == ["benign/notes", "benign/report.dcm"]
    assert summary["original"]["modes"] == {"DICOM MONOCHROME2": 16}
    # no identifying value in any output (manifest, prepare.json, PNGs)
    for path in (work / "data").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for secret in (b"MRN-", NAME.encode(), b"19700101", salt.encode()):
                assert secret not in blob, (path, secret)
    # the kept salt gives the same pseudonyms again
    again = prepare(cfg(src), work, force=True)
    assert again["fingerprint"] == summary["fingerprint"] and rows(work) == got


def test_configured_salt_is_used_and_not_recorded(tmp_path: Path) -> None:
    src, work = tmp_path / "src", tmp_path / "w"
    who = dicom_tree(src)
    summary = prepare(cfg(src, patient_salt="my secret salt"), work)
    assert not (work / SALT_FILE).exists()
    assert all(r["patient_id"] == pseudonym("my secret salt", who[r["source"]]) for r in rows(work))
    assert summary["config"]["patient_salt"] == "(set; not recorded)"
    assert "my secret salt" not in (work / "data" / "prepare.json").read_text()


def test_without_patient_id_the_subfolder_is_the_patient(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for cls in ("benign", "malignant"):
        for i in range(6):
            write(src / cls / f"case{i // 2}" / f"{i}.dcm", smooth(400 + 10 * i + (cls == "benign")), patient=None, burned=None)
    summary = prepare(cfg(src), tmp_path / "w")
    got = rows(tmp_path / "w")
    assert {r["patient_id"] for r in got} == {"case0", "case1", "case2"}
    assert summary["dicom"]["without_patient_id"] == 12
    assert summary["dicom"]["burned_in_annotation"]["absent"] == 12


def multi_frame_tree(root: Path) -> None:
    for cls in ("benign", "malignant"):
        for i in range(5):
            write(root / cls / f"s{i}.dcm", smooth(200 + 10 * i + (cls == "benign")), patient=f"{cls}{i}")
    clip = np.stack([smooth(300 + k) for k in range(3)])
    write(root / "benign" / "clip.dcm", clip, patient=None)


def test_multi_frame_refused_split_or_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    multi_frame_tree(src)
    with pytest.raises(BusganError, match=r"clip\.dcm: multi-frame DICOM \(3 frames.*data\.dicom_frames"):
        prepare(cfg(src), tmp_path / "w0")
    skipped = prepare(cfg(src, dicom_frames="skip"), tmp_path / "w1")
    assert skipped["images"] == 10 and skipped["dicom"]["skipped_multi_frame"] == ["benign/clip.dcm"]
    split = prepare(cfg(src, dicom_frames="split", resize="stretch"), tmp_path / "w2")
    assert split["images"] == 13 and split["dicom"]["images"] == 13
    frames = [r for r in rows(tmp_path / "w2") if r["source"] == "benign/clip.dcm"]
    assert sorted(Path(r["file"]).name for r in frames) == ["clip_f001.png", "clip_f002.png", "clip_f003.png"]
    assert len({r["split"] for r in frames}) == 1  # one clip, one split, though it has no patient id
    # frame k is written as frame k: each PNG is closest to its own frame resized to 16x16
    refs = [np.asarray(Image.fromarray(smooth(300 + k)).resize((16, 16), Image.Resampling.LANCZOS), int)
            for k in range(3)]
    for k, r in enumerate(sorted(frames, key=lambda r: r["file"])):
        with Image.open(tmp_path / "w2" / "data" / r["file"]) as im:
            dist = [np.abs(np.asarray(im, int) - ref).mean() for ref in refs]
        assert int(np.argmin(dist)) == k and dist[k] < 3, dist
    assert all(re.fullmatch(r"p[0-9a-f]{16}", r["patient_id"]) for r in rows(tmp_path / "w2") if r not in frames)


def test_bad_dicom_is_skipped_on_request(tmp_path: Path) -> None:
    src = tmp_path / "src"
    multi_frame_tree(src)
    os.remove(src / "benign" / "clip.dcm")
    (src / "malignant" / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"junk")
    with pytest.raises(BusganError, match=r"bad\.dcm: no image in this DICOM file"):
        prepare(cfg(src), tmp_path / "w")
    summary = prepare(cfg(src, bad_images="skip"), tmp_path / "w")
    assert summary["images"] == 10 and any("bad.dcm" in b for b in summary["skipped"]["bad_images"])
    assert json.loads((tmp_path / "w/data/prepare.json").read_text())["dicom"]["files"] == 11
