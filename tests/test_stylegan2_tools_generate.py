"""Generation file handling: names by seed, batch-size independence, skip existing, grid."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from busgan.errors import BusganError
from busgan.stylegan2 import generate as gen


def _fake_render(calls):
    def render(seeds):
        calls.append(len(seeds))
        z = gen.latents(seeds, 16 * 16)
        return gen.to_uint8(np.tanh(z.reshape(-1, 16, 16, 1)))
    return render


def test_parse_seeds():
    assert gen.parse_seeds("1-3,7, 9-10,3") == [1, 2, 3, 7, 9, 10]
    for bad in ("", "a-b", "5-1", "-3"):
        with pytest.raises(BusganError):
            gen.parse_seeds(bad)


def test_names_batches_and_independence(tmp_path):
    calls: list[int] = []
    n = gen.write_images(_fake_render(calls), range(1, 8), tmp_path / "a", batch_size=3)
    assert n == 7 and calls == [3, 3, 3]  # last batch padded to the fixed size
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [f"seed{s:06d}.png" for s in range(1, 8)]
    gen.write_images(_fake_render([]), [5, 1], tmp_path / "b", batch_size=5)
    for s in (1, 5):
        a = np.asarray(Image.open(tmp_path / "a" / gen.seed_filename(s)))
        b = np.asarray(Image.open(tmp_path / "b" / gen.seed_filename(s)))
        np.testing.assert_array_equal(a, b)


def test_rerun_skips_existing_and_writes_grid(tmp_path):
    calls: list[int] = []
    out = tmp_path / "benign"
    gen.write_images(_fake_render(calls), range(1, 5), out, 4)
    (out / gen.seed_filename(2)).unlink()
    calls.clear()
    grid = tmp_path / "benign-grid.png"
    assert gen.write_images(_fake_render(calls), range(1, 6), out, 4, grid_path=grid) == 5
    assert calls == [4]  # only seeds 2 and 5 rendered, in one padded batch
    assert Image.open(grid).size == (3 * 16, 2 * 16)
    assert not list(out.glob(".*"))  # no temporary files left


def test_bmp_and_bad_format(tmp_path):
    gen.write_images(_fake_render([]), [3], tmp_path, 2, fmt="bmp")
    assert (tmp_path / "seed000003.bmp").is_file()
    with pytest.raises(BusganError):
        gen.write_images(_fake_render([]), [3], tmp_path, 2, fmt="jpg")


def test_network_folder_without_best(tmp_path):
    with pytest.raises(BusganError, match="best.json"):
        gen.resolve_network(tmp_path)
