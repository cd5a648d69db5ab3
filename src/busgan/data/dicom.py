"""Ultrasound DICOM files for stage 0: which files are DICOM, header facts, pseudonymised
patient ids, and pixels as an 8-bit L or RGB image.

Files are DICOM when they end in ``.dcm`` / ``.dicom``, or have no suffix at all and carry the
``DICM`` marker after the 128-byte preamble (PACS exports such as ``IM000001``); ``DICOMDIR``
and files without an image (no ``Rows``: structured reports, presentation states) are skipped.
Only pixels, the photometric interpretation and a few header facts are read; patient ids are
kept only as salted hashes, and no header value is copied into any output.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from busgan.data.images import Loaded
from busgan.errors import BusganError, shown
from busgan.fileio import temp_name

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
SALT_FILE = "patient_salt"
"""The generated salt, in the work directory (mode 0600): keep it to keep the pseudonyms."""
PLUGIN_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg (or python-gdcm)"
GRAY = ("MONOCHROME1", "MONOCHROME2")
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422")  # pydicom converts the YBR ones to RGB


def _pydicom(path: Path) -> Any:
    try:
        import pydicom
    except ImportError:  # an optional extra: only DICOM sources need it
        raise BusganError(f"{shown(path)}: reading DICOM files needs pydicom; install it: "
                          "pip install 'busgan[dicom]' (or move the DICOM files out of the source)") from None
    return pydicom


def has_preamble(path: Path) -> bool:
    """Whether ``path`` holds the DICOM file marker ('DICM' after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_dicom_name(path: Path) -> bool:
    """A DICOM candidate: a ``.dcm``/``.dicom`` file, or a suffix-less one with the DICM marker."""
    name = path.name
    if name.startswith(".") or name.upper() == "DICOMDIR":
        return False
    suffix = path.suffix.lower()
    return suffix in DICOM_SUFFIXES or (suffix == "" and has_preamble(path))


@dataclass(frozen=True)
class Header:
    """What the importer needs from a DICOM header (the patient key is never stored)."""
    patient_key: str   # IssuerOfPatientID + PatientID ('' when absent)
    frames: int
    burned_in: str     # 'YES', 'NO' or '' (tag absent)
    is_image: bool     # False for valid objects without pixels: DICOMDIR, structured reports, ...


def read_header(path: Path) -> Header | None:
    """The header facts of ``path``; None when it cannot be parsed (the reader then reports why)."""
    pydicom = _pydicom(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        pid = str(ds.get("PatientID", "") or "").strip()
        issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
        # a valid non-image object (DICOMDIR, report) names its SOP class; without one the file
        # is broken and goes to load_dicom, which reports it (or skips it, per data.bad_images)
        sop = ds.get("SOPClassUID") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
        is_image = ("Rows" in ds and "Columns" in ds) or not sop
    except Exception:  # noqa: BLE001 - any parse failure is reported by load_dicom, per bad_images
        return None
    return Header(f"{issuer}\x00{pid}" if pid else "", max(frames, 1), burned, is_image)


class Pseudonymiser:
    """Salted hashes (HMAC-SHA256) of patient keys: stable for one salt, not reversible without it.

    The salt is the configured one, else the one kept in ``salt_file`` (made on first use, with
    32 random bytes, readable by its owner only), else (no file given) a random one for this run.
    """

    def __init__(self, salt: str = "", salt_file: Path | None = None) -> None:
        self._salt = salt.encode() if salt else b""
        self._file = salt_file

    def _key(self) -> bytes:
        if not self._salt:
            self._salt = self._load() if self._file is not None else secrets.token_hex(32).encode()
        return self._salt

    def _load(self) -> bytes:
        assert self._file is not None
        if self._file.exists():
            try:
                text = self._file.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as e:
                raise BusganError(f"{shown(self._file)}: cannot read the patient salt ({e}); fix its "
                                  "permissions, or delete it to make a new one (pseudonyms will change)") from None
            if len(text) < 32:
                raise BusganError(f"{shown(self._file)}: not a busgan patient salt; delete it to make a new "
                                  "one (pseudonyms will change) or set data.patient_salt")
            return text.encode()
        text = secrets.token_hex(32)
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_name(temp_name(self._file.name))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never world-readable
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text + "\n")
        os.replace(tmp, self._file)
        return text.encode()

    def __call__(self, patient_key: str) -> str:
        """'p' + 16 hex digits of the salted hash ('' for no key)."""
        if not patient_key:
            return ""
        return "p" + hmac.new(self._key(), patient_key.encode(), hashlib.sha256).hexdigest()[:16]

    def identity(self) -> str:
        """A hash of the salt in use (for fingerprints: a new salt gives new pseudonyms)."""
        return hashlib.sha256(b"busgan-salt:" + self._key()).hexdigest()[:16] if self._salt else ""


@dataclass
class DicomReport:
    """What prepare.json says about the DICOM files of a source (``dicom``)."""
    files: int = 0
    images: int = 0
    multi_frame_files: int = 0
    without_patient_id: int = 0
    burned_in_annotation: dict[str, int] = field(default_factory=lambda: {"YES": 0, "NO": 0, "absent": 0})
    burned_in_files: list[str] = field(default_factory=list)   # BurnedInAnnotation YES: text on the image
    skipped_multi_frame: list[str] = field(default_factory=list)

    def add(self, rel: str, header: Header | None, images: int) -> None:
        """Count one DICOM file imported as ``images`` images (an unparsable header: no facts)."""
        self.files += 1
        self.images += images
        if header is None:
            return
        self.multi_frame_files += header.frames > 1
        self.without_patient_id += not header.patient_key
        flag = header.burned_in if header.burned_in in ("YES", "NO") else "absent"
        self.burned_in_annotation[flag] += 1
        if flag == "YES":
            self.burned_in_files.append(rel)


def _to_uint8(arr: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Stored values of ``bits`` bits to 0..255 (signed ones shifted to 0 first)."""
    if arr.dtype.kind == "f":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        return np.clip((np.nan_to_num(arr) - lo) / max(hi - lo, 1e-12) * 255 + 0.5, 0, 255).astype(np.uint8)
    if bits == 8 and not signed and arr.dtype == np.uint8:
        return arr
    wide = arr.astype(np.int64)
    if signed:
        wide += 1 << (bits - 1)
    top = (1 << bits) - 1
    return np.clip((wide * 255 + top // 2) // top, 0, 255).astype(np.uint8)


def _decoder_check(ds: Any, name: str, hint: str) -> None:
    """A clear error when the file's transfer syntax cannot be decoded here."""
    from pydicom.pixels import get_decoder

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is None:
        raise BusganError(f"{name}: DICOM file without a transfer syntax (no file meta); {hint}")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise BusganError(f"{name}: pixel data in transfer syntax {ts.name} ({ts}), which pydicom cannot "
                          f"decode; re-export it uncompressed or as PNG, or {hint}") from None
    if not decoder.is_available:
        raise BusganError(f"{name}: pixel data compressed as {ts.name}, which needs a decoder plugin that is not "
                          f"installed: {PLUGIN_HINT}; or re-export it uncompressed, or {hint}")


def load_dicom(path: Path, frame: int | None = None, fix: str = "") -> Loaded:
    """Decode one frame of ``path`` (``frame`` None: a single-frame file) to 8-bit L or RGB.

    MONOCHROME1 is inverted (0 is white there), stored bits are scaled to 0..255 (signed data
    shifted first), YBR is converted to RGB by pydicom; VOI windows and palettes are not applied.
    """
    pydicom = _pydicom(path)
    from pydicom.pixels import pixel_array

    hint = fix or "re-export or delete the file"
    name = shown(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for a bad file
        kind = "not a DICOM file (no DICM marker)" if isinstance(e, pydicom.errors.InvalidDicomError) \
            else f"corrupt DICOM header ({_first_line(e)})"
        raise BusganError(f"{name}: {kind}; {hint}") from None
    if "Rows" not in ds or "Columns" not in ds:
        raise BusganError(f"{name}: no image in this DICOM file (no Rows/Columns: corrupt, or not an image "
                          f"object); {hint}")
    rows, cols, frames = int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and frame is None:
        raise BusganError(f"{name}: multi-frame DICOM ({frames} frames); set data.dicom_frames to 'split' "
                          "(every frame an image) or 'skip'")
    if rows * cols > Image.MAX_IMAGE_PIXELS:
        raise BusganError(f"{name}: too large to read safely ({cols}x{rows} pixels; busgan reads images of at "
                          f"most {Image.MAX_IMAGE_PIXELS:,} pixels); downscale it or {hint}")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in GRAY + COLOR:
        raise BusganError(f"{name}: photometric interpretation {photometric or 'missing'} is not supported "
                          f"(MONOCHROME1/2, RGB, YBR_FULL, YBR_FULL_422 are); re-export it as RGB or {hint}")
    _decoder_check(ds, name, hint)
    try:
        arr = pixel_array(os.fspath(path), index=frame if frames > 1 else None, raw=False)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - decoders raise ValueError, RuntimeError, ...
        raise BusganError(f"{name}: corrupt or truncated DICOM pixel data ({_first_line(e)}); {hint}") from None
    bits = int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 8) or 8)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    want = 2 if photometric in GRAY else 3
    if arr.ndim != want or (want == 3 and arr.shape[-1] != 3):
        raise BusganError(f"{name}: pixel data of shape {arr.shape} do not match {photometric}; {hint}")
    out = _to_uint8(arr, bits, signed)
    if photometric == "MONOCHROME1":
        out = 255 - out
    img = Image.fromarray(np.ascontiguousarray(out))  # (h, w) uint8 -> L, (h, w, 3) -> RGB
    return Loaded(img, f"DICOM {photometric}", img.width, img.height)


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e).strip() else type(e).__name__
