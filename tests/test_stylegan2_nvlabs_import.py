"""NVlabs StyleGAN2 pickles: read without running code, imported by name, reproduce NVlabs' outputs.

The reference is a real stylegan3-repo ``--cfg=stylegan2`` conditional snapshot (RGB, 16x16,
c_dim 2) and the outputs NVlabs' code computed from it (tests/data/nvlabs/README.md).
"""

from __future__ import annotations

import json

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from busgan.cli import main
from busgan.errors import BusganError
from busgan.stylegan2 import nvlabs_import
from busgan.stylegan2 import snapshot as snap
from busgan.stylegan2.nvlabs_import import import_snapshot, infer_channel_base, read_networks
from busgan.stylegan2.nvlabs_pickle import load_pickle

DATA = Path(__file__).parent / "data" / "nvlabs"
PKL = DATA / "snapshot_tiny_c3_cond.pkl"


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "snapshot_tiny_c3_cond_ref.npz") as z:
        return {k: z[k] for k in z.files}


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 2, 3, 1))


_MODELS: dict = {}  # architecture -> (model, compiled programs): one compile per architecture


def _program(model, name: str, fn):
    """``fn(tv, nt, *args)`` run on given weights as one compiled program, compiled once per model
    (eager JAX compiles each of hundreds of small ops separately: slow on a shared CPU)."""
    import keras

    from busgan.stylegan2 import autodiff
    key = (id(model), name)
    if key not in _MODELS:
        def run(tv, nt, *args):
            state = list(zip(model.trainable_variables, tv)) + list(zip(model.non_trainable_variables, nt))
            with keras.StatelessScope(state_mapping=state):
                return fn(model, *args)
        _MODELS[key] = autodiff.compile(run)
    return _MODELS[key]


class _Net:
    """A network's weights from a busgan snapshot, with the model of its architecture."""

    def __init__(self, model, arrays: dict[str, np.ndarray], key: str) -> None:
        self.model = model
        self.tv = [arrays[f"{key}/{i}"] for i in range(len(model.trainable_variables))]
        self.nt = [arrays[f"{key}_nt/{i}"] for i in range(len(model.non_trainable_variables))]

    def __call__(self, name: str, fn, *args):
        out = _program(self.model, name, fn)(self.tv, self.nt, *args)
        return [_np(y) for y in out]


def _model(kind: str, cfg, **kw):
    from busgan.stylegan2.networks import Discriminator, build_generator
    key = (kind, json.dumps(vars(cfg), sort_keys=True, default=str), tuple(kw.items()))  # tables too
    if key not in _MODELS:
        _MODELS[key] = build_generator(cfg) if kind == "G" else Discriminator(cfg, **kw)
    return _MODELS[key]


def _models(path: Path):
    """(G_ema, G or None, D or None, meta) from a written busgan snapshot."""
    arrays, meta = snap.read_snapshot(path)
    cfg = snap.config_from_meta(meta)
    G = _model("G", cfg)
    g_ema = _Net(G, arrays, "g_ema")
    g = _Net(G, arrays, "g") if "g/0" in arrays else None
    d = _Net(_model("D", cfg, mbstd_group=meta["mbstd_group"]), arrays, "d") if "d/0" in arrays else None
    return g_ema, g, d, meta


def _conditional_ws(G, z, c):
    """ws at psi 1 and 0.5, and at psi 1 with the labels flipped."""
    return G.map(z, c=c), G.map(z, psi=0.5, c=c), G.map(z, c=c[:, ::-1])


def _synthesis(G, ws):
    return (G.synthesize(ws, noise_mode="const"),)


def _d_outputs(D, x, c):
    return D(x, c), D.cmap(c)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("imported")
    path = import_snapshot(PKL, out)
    return (path, out, *_models(path))


@pytest.fixture(scope="module")
def g_outputs(imported, ref):
    """G_ema's ws and images (psi 1, psi 0.5, psi 1 with flipped labels), and G's psi-1 image:
    two compiled programs (mapping, synthesis), each reused."""
    _, _, g_ema, g, _, _ = imported
    ws1, ws05, ws_flip = g_ema("map", _conditional_ws, ref["z"], ref["c"])
    images = {k: g_ema("synthesis", _synthesis, ws)[0] for k, ws in
              (("psi1", ws1), ("psi05", ws05), ("flipped", ws_flip))}
    images["G_psi1"] = g("synthesis", _synthesis, g("map", _conditional_ws, ref["z"], ref["c"])[0])[0]
    return ws1, images


def _np(x) -> np.ndarray:
    from keras import ops
    return ops.convert_to_numpy(x)


# --- the reader ------------------------------------------------------------------------------

def test_reader_decodes_nvlabs_tensors_without_torch(ref, monkeypatch):
    for name in ("torch", "tensorflow"):  # importing either would now fail: neither is needed
        monkeypatch.setitem(sys.modules, name, None)
    obj = load_pickle(PKL)
    assert list(obj) == ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    assert obj["augment_pipe"] is None and obj["training_set_kwargs"]["resolution"] == 16
    counts = {k: len(obj[k].tensors()) for k in ("G", "G_ema", "D")}
    assert counts == {"G": 58, "G_ema": 58, "D": 46}  # the README's state_dict sizes
    for name in ("G_ema.synthesis.b16.torgb.weight", "G_ema.synthesis.b4.conv1.noise_strength",
                 "G.mapping.fc0.bias", "D.b16.skip.weight", "G_ema.mapping.w_avg"):
        net, _, key = name.partition(".")
        value = obj[net].tensors()[key]
        assert value.dtype == np.float32 and value.shape == ref[name].shape
        np.testing.assert_array_equal(value, ref[name])
    fc0 = obj["G_ema"].find("mapping.fc0")
    assert fc0.class_name == "FullyConnectedLayer" and fc0.attr("bias_gain") == 0.01
    assert float(fc0.attr("weight_gain")) == pytest.approx(0.01 / np.sqrt(64))  # numpy.float64 scalar


def test_tensor_views_follow_offset_and_strides():
    from busgan.stylegan2.nvlabs_pickle import _rebuild_tensor_v2, _Storage
    storage = _Storage(np.arange(8, dtype=np.float32))
    # a transposed (column-major) 2x3 view starting at element 1: rows step 1, columns step 2
    np.testing.assert_array_equal(_rebuild_tensor_v2(storage, 1, (2, 3), (1, 2)), [[1, 3, 5], [2, 4, 6]])
    assert _rebuild_tensor_v2(storage, 7, (), ()).shape == () and _rebuild_tensor_v2(storage, 7, (), ()) == 7
    with pytest.raises(ValueError, match="beyond its storage"):
        _rebuild_tensor_v2(storage, 3, (2, 3), (3, 1))  # last element 3 + 3 + 2 = 8 is outside


def test_channel_base_inferred_from_widths():
    # config-e at 256: min(16384 // r, 512); the fixture: 64, 32, 16 at 4, 8, 16
    assert infer_channel_base({4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}) == (16384, 512)
    assert infer_channel_base({4: 64, 8: 32, 16: 16}) == (256, 64)
    assert infer_channel_base({4: 32, 8: 32}) == (256, 32)  # all at the maximum: any base >= 8 * 32
    with pytest.raises(ValueError):
        infer_channel_base({4: 64, 8: 48, 16: 16})  # 48 * 8 = 384, but 384 // 16 = 24, not 16


# --- PyTorch snapshot -> busgan ----------------------------------------------------------------

@pytest.mark.keras
def test_config_inferred_from_shapes(imported):
    path, out, _, _, _, meta = imported
    cfg = snap.config_from_meta(meta)
    assert (cfg.resolution, cfg.channels, cfg.z_dim, cfg.mapping_layers, cfg.conditional) == (16, 3, 32, 2, True)
    assert (cfg.preset, cfg.channel_base, cfg.channel_max) == ("custom", 256, 64)
    assert meta["classes"] == ["benign", "malignant"] and meta["mbstd_group"] == 2
    assert meta["imported"]["networks"] == ["G_ema", "G", "D"]
    from busgan.stylegan2.generate import resolve_network
    assert resolve_network(out) == path  # best.json names it: generate --network OUT works


@pytest.mark.keras
@pytest.mark.parametrize("psi,key", [(1.0, "img_psi1"), (0.5, "img_psi05")])
def test_imported_g_ema_reproduces_nvlabs_images(g_outputs, ref, psi, key):
    ws, images = g_outputs
    np.testing.assert_allclose(ws, ref["ws"], rtol=0, atol=1e-5)
    expect = _nhwc(ref[key])
    img = images["psi1" if psi == 1.0 else "psi05"]
    np.testing.assert_allclose(img, expect, rtol=0, atol=2e-5 * np.abs(expect).max())
    # both classes are in the batch, and the label matters: flipping c changes the image
    assert set(ref["c"].argmax(1)) == {0, 1}
    if psi == 1.0:
        assert np.abs(images["flipped"] - expect).max() > 0.05 * np.abs(expect).max()


@pytest.mark.keras
def test_g_ema_not_g_is_what_generate_uses(g_outputs, ref):
    _, images = g_outputs
    np.testing.assert_allclose(images["G_psi1"], _nhwc(ref["img_G_psi1"]), rtol=0, atol=5e-5)
    a, b = _nhwc(ref["img_psi1"]), _nhwc(ref["img_G_psi1"])
    assert np.abs(a - b).max() / np.abs(a).max() > 0.1  # the two generators really differ
    # the snapshot's g_ema, which generate reads, gives G_ema's images, not G's
    assert np.abs(images["psi1"] - a).max() < 1e-4 < np.abs(images["psi1"] - b).max()


@pytest.mark.keras
def test_discriminator_logits_match(imported, ref):
    _, _, _, _, D, _ = imported
    logits, cmap = D("d", _d_outputs, np.ascontiguousarray(_nhwc(ref["d_in"])), ref["d_c"])
    np.testing.assert_allclose(cmap, ref["d_cmap"], rtol=0, atol=1e-5)
    labels = ref["d_c"].argmax(1)
    assert set(labels) == {0, 1} and np.abs(cmap[labels == 0][0] - cmap[labels == 1][0]).max() > 0.1
    # logits span only 1.937..1.980, so the tolerance is tight against that spread
    np.testing.assert_allclose(logits, ref["d_logits"][:, 0], rtol=0, atol=3e-6)


def test_rerun_same_pickle_reuses_snapshot_and_other_gan_refused(imported, tmp_path):
    path, out, *_ = imported
    assert import_snapshot(PKL, out) == path
    with pytest.raises(BusganError, match="label order"):
        import_snapshot(PKL, tmp_path / "new", classes=("benign", "cyst"))
    (tmp_path / "best.json").write_text('{"snapshot": "snapshots/snapshot-000001000.npz"}')
    with pytest.raises(BusganError, match="already holds a GAN"):
        import_snapshot(PKL, tmp_path)


def _tamper(monkeypatch, edit):
    obj = load_pickle(PKL)
    edit(obj)
    monkeypatch.setattr(nvlabs_import, "load_pickle", lambda p: obj)


def test_every_tensor_accounted_for(monkeypatch):
    _tamper(monkeypatch, lambda o: o["G_ema"].find("synthesis.b8.conv0").state["_buffers"].update(
        extra=np.zeros(3, np.float32)))
    with pytest.raises(BusganError, match=r"G_ema: tensor\(s\) synthesis\.b8\.conv0\.extra have no counterpart"):
        read_networks(PKL)
    _tamper(monkeypatch, lambda o: o["D"].find("b8.conv1").state["_parameters"].pop("bias"))
    with pytest.raises(BusganError, match=r"D: tensor\(s\) b8\.conv1\.bias are missing"):
        read_networks(PKL)
    _tamper(monkeypatch, lambda o: o["D"].find("b4.out").state["_parameters"].update(
        weight=np.zeros((1, 64), np.float32), bias=np.zeros(1, np.float32)))
    with pytest.raises(BusganError, match=r"'b4\.out\.weight' has shape \(1, 64\)"):
        read_networks(PKL)  # an unconditional output layer where c_dim says conditional
    _tamper(monkeypatch, lambda o: o["G_ema"].state.update(img_resolution=32))
    with pytest.raises(BusganError, match="img_resolution 32 .shapes say 16."):
        read_networks(PKL)


# --- TensorFlow 1 pickles -----------------------------------------------------------------------

@pytest.fixture
def tf_network_class(monkeypatch):
    """A stand-in for dnnlib.tflib.network.Network, so pickle writes NVlabs' global name."""
    class Network:
        def __init__(self, state):
            self.state = state

        def __getstate__(self):
            return self.state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mod = types.ModuleType("dnnlib.tflib.network")
    mod.Network = Network
    for name, m in (("dnnlib", types.ModuleType("dnnlib")), ("dnnlib.tflib", types.ModuleType("dnnlib.tflib")),
                    ("dnnlib.tflib.network", mod)):
        monkeypatch.setitem(sys.modules, name, m)
    return Network


LRMUL = 0.01


def _tf_snapshot(Network, t: dict[str, np.ndarray], rng, scale: float = 1.0, label_size: int = 0):
    """A (G, D, Gs) tuple in NVlabs' TF layout, built from torch synthesis tensors ``t``, as the
    reference README describes: conv [kh, kw, in, out] (upsampling kernels flipped relative to
    torch, as legacy.py undoes), mod_weight [w_dim, in], mod_bias without the +1, const
    [1, C, 4, 4], noise [1, 1, H, W]."""
    syn = {"4x4/Const/const": t["synthesis.b4.const"][None] * scale, "lod": np.float32(0)}
    convs = [("synthesis.b4.conv1", "4x4/Conv", False)]
    for r in (8, 16):
        convs += [(f"synthesis.b{r}.conv0", f"{r}x{r}/Conv0_up", True), (f"synthesis.b{r}.conv1", f"{r}x{r}/Conv1", False)]
    layers = [(tp, sc, up) for tp, sc, up in convs] + [(f"synthesis.b{r}.torgb", f"{r}x{r}/ToRGB", False) for r in (4, 8, 16)]
    for tp, sc, up in layers:
        w = np.transpose(t[f"{tp}.weight"], (2, 3, 1, 0))
        syn[f"{sc}/weight"] = np.ascontiguousarray(w[::-1, ::-1] if up else w) * scale
        syn[f"{sc}/mod_weight"] = np.ascontiguousarray(t[f"{tp}.affine.weight"].T)
        syn[f"{sc}/mod_bias"] = t[f"{tp}.affine.bias"] - 1.0
        syn[f"{sc}/bias"] = t[f"{tp}.bias"]
    for i, (tp, sc, _) in enumerate(convs):
        syn[f"{sc}/noise_strength"] = t[f"{tp}.noise_strength"]
        syn[f"noise{i}"] = t[f"{tp}.noise_const"][None, None]
    mapping = {}
    for i in range(2):
        mapping[f"Dense{i}/weight"] = (rng.standard_normal((32, 32)) / LRMUL).astype(np.float32)
        mapping[f"Dense{i}/bias"] = (rng.standard_normal(32) * 0.1 / LRMUL).astype(np.float32)
    if label_size:
        mapping["LabelConcat/weight"] = rng.standard_normal((label_size, 32)).astype(np.float32)
    kw = {"num_channels": 3, "resolution": 16, "label_size": label_size}

    def net(name, func, variables, components=None):
        return Network({"version": 4, "name": name, "static_kwargs": dict(kw), "components": components or {},
                        "build_module_src": "raise SystemExit('never executed')\n", "build_func_name": func,
                        "variables": list(variables.items())})

    main_vars = {"lod": np.float32(0), "dlatent_avg": rng.standard_normal(32).astype(np.float32)}
    gs = net("Gs", "G_main", main_vars, {"synthesis": net("G_synthesis", "G_synthesis_stylegan2", syn),
                                         "mapping": net("G_mapping", "G_mapping", mapping)})
    d = net("D", "D_stylegan2", {"16x16/FromRGB/weight": np.ones((1, 1, 3, 16), np.float32)})
    return gs, d, mapping, main_vars["dlatent_avg"]


def _tf_mapping_reference(z, mapping, w_avg, psi):
    """NVlabs' TF G_mapping in NumPy: normalise z, dense layers (run-time gain lrmul / sqrt(fan_in),
    bias * lrmul), leaky ReLU 0.2 times sqrt(2); then truncation toward dlatent_avg."""
    x = z / np.sqrt(np.mean(z.astype(np.float64) ** 2, axis=1, keepdims=True) + 1e-8)
    for i in range(2):
        w, b = mapping[f"Dense{i}/weight"], mapping[f"Dense{i}/bias"]
        x = x @ (w * LRMUL / np.sqrt(w.shape[0])) + b * LRMUL
        x = np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)
    return w_avg + psi * (x - w_avg)


@pytest.mark.keras
@pytest.mark.parametrize("protocol", [4, 5])
def test_tensorflow1_snapshot_imports(tf_network_class, ref, imported, tmp_path, protocol):
    rng = np.random.default_rng(0)
    t = load_pickle(PKL)["G_ema"].tensors()
    gs, d, mapping, w_avg = _tf_snapshot(tf_network_class, t, rng)
    g_train, _, _, _ = _tf_snapshot(tf_network_class, t, rng, scale=0.5)  # G differs from Gs
    g_train.state["name"] = "G"
    pkl = tmp_path / "network-snapshot-000140.pkl"
    pkl.write_bytes(pickle.dumps((g_train, d, gs), protocol=protocol))
    path = import_snapshot(pkl, tmp_path / "out")
    G, g, D, meta = _models(path)
    assert g is None and D is None and meta["imported"]["from"] == "nvlabs-tensorflow1"
    assert meta["kimg"] == 140 and path.name == "snapshot-000140000.npz"
    cfg = snap.config_from_meta(meta)
    assert (cfg.resolution, cfg.channels, cfg.z_dim, cfg.conditional, cfg.channel_base) == (16, 3, 32, False, 256)
    z = ref["z"]
    ws = G("tf-map", lambda m, z: (m.map(z, psi=0.7),), z)[0]
    np.testing.assert_allclose(ws[:, 3], _tf_mapping_reference(z, mapping, w_avg, 0.7), rtol=0, atol=1e-4)
    # Gs's synthesis holds G_ema's weights: every synthesis value equals the PyTorch import's,
    # which reproduces NVlabs' images (above), so NVlabs' ws give NVlabs' images here too
    ours, theirs = _synthesis_values(G), _synthesis_values(imported[2])
    assert len(ours) == 1 + 5 * 6 + 3 * 4  # const; 5 convs (w, noise, b, noise_const, affine w/b); 3 toRGBs
    for (name, a), (_, b) in zip(ours, theirs):
        # equal up to the float32 rounding of TF's mod_bias (stored without the +1)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=name)


def _synthesis_values(net: "_Net") -> list[tuple[str, np.ndarray]]:
    """(layer/variable, value) of every synthesis variable, in layer order."""
    m = net.model
    values = {id(v): x for vs, xs in ((m.trainable_variables, net.tv), (m.non_trainable_variables, net.nt))
              for v, x in zip(vs, xs)}
    out = [("const", values[id(m.const)])]
    for layer in [*m.convs, *m.torgbs]:
        out += [(f"{layer.name}/{v.path}", values[id(v)]) for v in layer.variables]
    return out


def test_conditional_tensorflow1_snapshot_refused(tf_network_class, tmp_path):
    t = load_pickle(PKL)["G_ema"].tensors()
    gs, d, _, _ = _tf_snapshot(tf_network_class, t, np.random.default_rng(0), label_size=2)
    pkl = tmp_path / "network-snapshot-000000.pkl"
    pkl.write_bytes(pickle.dumps((gs, d, gs), protocol=4))
    with pytest.raises(BusganError, match="conditional TensorFlow StyleGAN2 network"):
        import_snapshot(pkl, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- malicious pickles ----------------------------------------------------------------------------

def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os
        return (os.system, (self.cmd,))


def _storage_blob_with(cmd: str) -> bytes:
    """A legacy torch.save stream whose storage pickle calls os.system."""
    head = b"".join(pickle.dumps(x, protocol=2) for x in (
        0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}))
    return head + b"\x80\x02" + _global("os", "system") + pickle.dumps(cmd, protocol=2)[2:-1] + b"\x85R."


def _payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    cmd = f"touch {marker}"
    blob = _storage_blob_with(cmd)
    return {
        "GLOBAL os.system": (_global("os", "system") + f"(S'{cmd}'\ntR.".encode(), r"'os\.system'"),
        "STACK_GLOBAL": (pickle.dumps(_Evil(cmd), protocol=4), r"'posix\.system'|'os\.system'|'nt\.system'"),
        "INST builtins.eval": (f"(S'__import__(\"os\").system(\"{cmd}\")'\nibuiltins\neval\n.".encode(),
                               r"'builtins\.eval'"),
        "inside a tensor storage": (b"\x80\x03" + _global("torch.storage", "_load_from_bytes")
                                    + pickle.dumps(blob, protocol=3)[2:-1] + b"\x85R.", r"'os\.system'"),
        "object array": (pickle.dumps(np.array([1, "x"], dtype=object), protocol=4), "not numeric"),
    }


@pytest.mark.parametrize("case", ["GLOBAL os.system", "STACK_GLOBAL", "INST builtins.eval",
                                  "inside a tensor storage", "object array"])
def test_disallowed_globals_refused_and_nothing_runs(tmp_path, case):
    marker = tmp_path / "marker"
    data, message = _payloads(marker)[case]
    pkl = tmp_path / "network-snapshot-000000.pkl"
    pkl.write_bytes(data)
    with pytest.raises(BusganError, match=message):
        import_snapshot(pkl, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    # the payload really is live: the standard unpickler would have run it
    if case == "GLOBAL os.system":
        pickle.loads(data)
        assert marker.exists()


def test_cli_refusal_is_one_line(tmp_path, capsys):
    marker = tmp_path / "marker"
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(_payloads(marker)["GLOBAL os.system"][0])
    assert main(["import-nvlabs", str(pkl), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "refused to load the global 'os.system'" in err and str(pkl) in err
    assert not marker.exists()


@pytest.mark.keras
def test_cli_imports(tmp_path, capsys):
    assert main(["import-nvlabs", str(PKL), "--out", str(tmp_path / "net"), "--no-d"]) == 0
    assert "snapshot-000000000.npz" in capsys.readouterr().out
    arrays, meta = snap.read_snapshot(tmp_path / "net" / "snapshots" / "snapshot-000000000.npz")
    assert meta["imported"]["networks"] == ["G_ema", "G"] and not any(k.startswith("d/") for k in arrays)


@pytest.mark.keras
def test_busgan_run_imports_one_pickle_per_class_instead_of_training(tf_network_class, tmp_path):
    """[gan] import = {benign = ..., malignant = ...}: stage train-gan writes each class's
    snapshot from its pickle, and generation reads it; a missing class or file is refused."""
    from busgan import pipeline
    from busgan.config import Config, config_from_dict
    from busgan.stylegan2.generate import generate_images
    t = load_pickle(PKL)["G_ema"].tensors()
    pkls = {}
    for i, cls in enumerate(("benign", "malignant")):
        gs, d, _, _ = _tf_snapshot(tf_network_class, t, np.random.default_rng(i))
        pkls[cls] = tmp_path / f"{cls}.pkl"
        pkls[cls].write_bytes(pickle.dumps((gs, d, gs)))
    cfg = config_from_dict({"gan": {"import": {c: str(p) for c, p in pkls.items()}}})
    assert cfg.gan.import_networks == {c: str(p) for c, p in pkls.items()}
    work = tmp_path / "work"
    summary = pipeline._train_gans(pipeline.Context(cfg, work))
    assert summary["imported"] == cfg.gan.import_networks
    for cls in ("benign", "malignant"):
        assert (work / summary["best_snapshots"][cls]).is_file()
        assert generate_images(work / "stylegan2" / cls, tmp_path / "gen" / cls, [0, 1], 1.0, 2) == 2
        assert len(list((tmp_path / "gen" / cls).glob("seed*.png"))) == 2
    only_one = Config()
    only_one.gan.import_networks = {"benign": str(pkls["benign"])}
    with pytest.raises(BusganError, match="one NVlabs pickle per class"):
        pipeline.validate_paths(only_one)
    only_one.gan.import_networks = {"benign": str(pkls["benign"]), "malignant": str(tmp_path / "no.pkl")}
    with pytest.raises(BusganError, match="malignant network .* not found"):
        pipeline.validate_paths(only_one)
