"""Read NVlabs StyleGAN2 pickles without running any of their code (no torch, no TensorFlow).

A pickle names the functions it calls. ``pickle.load`` imports and calls whatever it names
(``os.system`` included) and NVlabs' own loader then ``exec``s the module source stored in
the file. Here a restricted unpickler resolves only a fixed list of globals, each mapped to
a function written here that builds plain data:

- tensor storages (``torch.storage._load_from_bytes``) are decoded from the legacy
  ``torch.save`` stream inside the pickle, itself read by a second restricted unpickler that
  allows only the storage classes; ``_rebuild_tensor_v2`` / ``_rebuild_parameter`` give
  NumPy arrays;
- NVlabs' persistent modules (``torch_utils.persistence._reconstruct_persistent_obj``)
  become ``NvModule`` placeholders holding class name and state; the stored module source
  is ignored, never executed;
- TensorFlow 1 ``dnnlib.tflib.network.Network`` objects become ``TfNetwork`` placeholders
  holding their state (variables as name -> NumPy array);
- NumPy arrays, scalars and dtypes of numeric kinds only, ``OrderedDict``, ``EasyDict``.

Any other global is refused with a BusganError naming it, before anything is called.
The byte format is described in ``../shared/reference/nvlabs/README.md``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from busgan.errors import BusganError, shown

# --- placeholders ----------------------------------------------------------------------------


class NvModule:
    """An NVlabs torch module, inert: its class name and its ``__dict__`` (``state``)."""

    def __init__(self, class_name: str, state: dict[str, Any]) -> None:
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state: Any) -> None:  # BUILD of a module pickled without persistence
        self.state = state if isinstance(state, dict) else {}

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    @property
    def children(self) -> dict[str, "NvModule"]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, NvModule)}

    def tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The state_dict: parameters and persistent buffers under their dotted names."""
        out: dict[str, np.ndarray] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                out[prefix + name] = value
        for name, child in self.children.items():
            out.update(child.tensors(f"{prefix}{name}."))
        return out

    def find(self, dotted: str) -> "NvModule | None":
        """The submodule at a dotted path ("" = this module), or None."""
        mod: NvModule | None = self
        for part in filter(None, dotted.split(".")):
            mod = mod.children.get(part) if mod is not None else None
        return mod

    def __repr__(self) -> str:
        return f"NvModule({self.class_name})"


class TfNetwork:
    """A TensorFlow 1 ``dnnlib.tflib.network.Network``, inert: its pickled state only."""

    def __init__(self, *args: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    @property
    def name(self) -> str:
        return str(self.state.get("name", ""))

    def variables(self) -> dict[str, np.ndarray]:
        """This network's own variables (not its components'), local name -> array."""
        out: dict[str, np.ndarray] = {}
        for item in self.state.get("variables") or ():
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise ValueError("a TensorFlow network's variables are not (name, array) pairs")
            out[item[0]] = item[1]
        return out

    def __repr__(self) -> str:
        return f"TfNetwork({self.name})"


class EasyDict(dict):
    """dnnlib.util.EasyDict: a dict (attribute access is not needed here)."""


def _nv_class(module: str, name: str) -> type:
    """A placeholder class for an NVlabs network class pickled as a plain global."""
    def new(cls: type, *args: Any, **kw: Any) -> NvModule:
        obj = object.__new__(cls)
        NvModule.__init__(obj, name, {})
        return obj

    def init(self: NvModule, *args: Any, **kw: Any) -> None:
        NvModule.__init__(self, name, {})
    return type(name, (NvModule,), {"__new__": new, "__init__": init, "__module__": __name__})


# --- tensors and storages ----------------------------------------------------------------------

class _Storage:
    """A flat typed storage decoded from a legacy ``torch.save`` blob."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _StorageUnpickler(pickle.Unpickler):
    """The pickles inside one storage blob: only torch storage classes may be named."""

    def __init__(self, f: io.BytesIO) -> None:
        super().__init__(f)
        self.pid: tuple | None = None

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if self.pid is not None:
            raise ValueError("a storage blob holds more than one storage")
        self.pid = pid
        return pid


def _load_from_bytes(blob: Any) -> _Storage:
    """Decode one legacy ``torch.save`` blob (magic, protocol, sys info, storage, keys, data)."""
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError("a storage is not stored as bytes")
    f = io.BytesIO(bytes(blob))
    if _StorageUnpickler(f).load() != _LEGACY_MAGIC:
        raise ValueError("a storage blob lacks torch's magic number")
    if _StorageUnpickler(f).load() != _LEGACY_PROTOCOL:
        raise ValueError("a storage blob has an unknown protocol version")
    info = _StorageUnpickler(f).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise ValueError("a storage blob is not little-endian")
    reader = _StorageUnpickler(f)
    reader.load()
    pid = reader.pid
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
        raise ValueError(f"a storage blob has an unexpected storage record {pid!r:.80}")
    _, stype, key, _location, numel, _view = pid
    keys = _StorageUnpickler(f).load()
    if keys != [key]:
        raise ValueError("a storage blob's key list does not match its storage")
    head = f.read(8)
    if len(head) != 8 or struct.unpack("<q", head)[0] != numel or numel < 0:
        raise ValueError("a storage blob's element count does not match its record")
    raw = f.read(numel * stype.dtype.itemsize)
    if len(raw) != numel * stype.dtype.itemsize:
        raise ValueError("a storage blob is truncated")
    if f.read(1):
        raise ValueError("a storage blob has trailing bytes")
    return _Storage(np.frombuffer(raw, stype.dtype).astype(stype.dtype.newbyteorder("=")))


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> np.ndarray:
    """A NumPy copy of the tensor view (offset, size, stride in elements) of a storage."""
    if not isinstance(storage, _Storage):
        raise ValueError("a tensor does not refer to a decoded storage")
    size, stride = tuple(size), tuple(stride)
    ints = (offset, *size, *stride)
    if not all(isinstance(v, int) and v >= 0 for v in ints) or len(size) != len(stride):
        raise ValueError("a tensor has an invalid size, stride or offset")
    data = storage.data
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= data.size:
        raise ValueError("a tensor reaches beyond its storage")
    if not all(size):
        return np.zeros(size, data.dtype)
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[offset:], size, [s * item for s in stride], writeable=False)
    return np.array(view)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any) -> np.ndarray:
    return _rebuild_tensor_v2(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise ValueError("a parameter does not wrap a tensor")
    return data


def _reconstruct_persistent(meta: Any) -> NvModule:
    """NVlabs' persistent-class record -> an inert placeholder (module_src is never run)."""
    if not (isinstance(meta, dict) and meta.get("type") == "class"
            and isinstance(meta.get("class_name"), str) and isinstance(meta.get("state"), dict)):
        raise ValueError("a persistent object record is not NVlabs' {'type': 'class', ...} format")
    return NvModule(meta["class_name"], meta["state"])


# --- NumPy ---------------------------------------------------------------------------------------

_NUMERIC_KINDS = "biufc"
_NDARRAY = object()  # stands for numpy.ndarray: only _reconstruct may receive it


def _np_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str):
        raise ValueError("a NumPy dtype is not given by its type code")
    dt = np.dtype(spec)
    if dt.kind not in _NUMERIC_KINDS:
        raise ValueError(f"the NumPy dtype {spec!r} is not numeric")
    return np.dtype(spec, bool(align), bool(copy))


def _numeric(dt: Any) -> np.dtype:
    if not isinstance(dt, np.dtype) or dt.kind not in _NUMERIC_KINDS:
        raise ValueError(f"a NumPy value has a non-numeric dtype {dt!r:.40}")
    return dt


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    dt = _numeric(dtype)
    raw = data.encode("latin1") if isinstance(data, str) else data
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != dt.itemsize:
        raise ValueError("a NumPy scalar has the wrong number of bytes")
    return np.frombuffer(bytes(raw), dt)[0]


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """Start of a pickled ndarray; BUILD (ndarray.__setstate__) fills it, then dtypes are checked."""
    if subtype is not _NDARRAY:
        raise ValueError("numpy _reconstruct is only allowed for numpy.ndarray")
    return np.empty(0, np.int8)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    dt = _numeric(dtype)
    raw = bytes(buf)
    shape = tuple(shape)
    if len(raw) != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ValueError("a NumPy array has the wrong number of bytes")
    return np.frombuffer(raw, dt).reshape(shape, order="F" if order == "F" else "C").copy()


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Protocol-2 bytes (``_codecs.encode(str, 'latin1')``)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("_codecs.encode is only allowed for latin1 bytes")
    return text.encode("latin1")


# --- the allow-list ------------------------------------------------------------------------------

_ALLOWED: dict[str, Any] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_from_bytes,
    "torch.Size": tuple,
    "collections.OrderedDict": collections.OrderedDict,
    "dnnlib.util.EasyDict": EasyDict,
    "dnnlib.EasyDict": EasyDict,
    "dnnlib.tflib.network.Network": TfNetwork,
    "numpy.dtype": _np_dtype,
    "numpy.ndarray": _NDARRAY,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "__builtin__.set": set,
    "_codecs.encode": _codecs_encode,
}
for _np_core in ("numpy.core", "numpy._core"):
    _ALLOWED[f"{_np_core}.multiarray.scalar"] = _np_scalar
    _ALLOWED[f"{_np_core}.multiarray._reconstruct"] = _np_reconstruct
    _ALLOWED[f"{_np_core}.numeric._frombuffer"] = _np_frombuffer
# Modules defining NVlabs' network classes, for modules pickled without persistence.
NV_NETWORK_MODULES = ("training.networks_stylegan2", "training.networks", "training.augment")


def allowed_globals() -> tuple[str, ...]:
    """Every global a pickle may name (NVlabs' network modules' classes besides)."""
    return tuple(sorted(_ALLOWED))


class _Refused(Exception):
    """A global outside the allow-list (raised before anything is called)."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module in NV_NETWORK_MODULES and name.isidentifier():
            return _nv_class(module, name)
        raise _Refused(key)

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError("persistent ids outside tensor storages (a torch.save zip file?)")


def _check_arrays(obj: Any, seen: set[int] | None = None) -> None:
    """Refuse arrays of non-numeric dtypes (object arrays) anywhere in the loaded tree."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        _numeric(obj.dtype)
    elif isinstance(obj, dict):
        for v in obj.values():
            _check_arrays(v, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_arrays(v, seen)
    elif isinstance(obj, (NvModule, TfNetwork)):
        _check_arrays(obj.state, seen)


def load_pickle(path: Path) -> Any:
    """The object in an NVlabs pickle, with placeholders for its networks; nothing is executed.

    A global outside the allow-list is refused with one line naming it; so is a file that
    is not such a pickle.
    """
    path = Path(path)
    fix = ("give a network-snapshot-*.pkl written by NVlabs' StyleGAN2(-ADA) or stylegan3 "
           "training code")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BusganError(f"{shown(path)}: cannot be read ({e.strerror or type(e).__name__}); {fix}") from None
    try:
        obj = _Unpickler(io.BytesIO(data), encoding="latin1").load()
        _check_arrays(obj)
    except _Refused as e:
        raise BusganError(f"{shown(path)}: refused to load the global '{e}' (only tensor and array "
                          "reconstruction and NVlabs' network classes are allowed; nothing was run); "
                          f"the file is not a plain NVlabs network pickle, or was altered; {fix}") from None
    except BusganError:
        raise
    except RecursionError:
        raise BusganError(f"{shown(path)}: nested too deeply to be a network pickle; {fix}") from None
    except Exception as e:  # noqa: BLE001 - any malformed stream is the same user error
        raise BusganError(f"{shown(path)}: not a readable NVlabs pickle ({type(e).__name__}: "
                          f"{str(e)[:120]}); {fix}") from None
    return obj
