"""TensorBoard event files: CRC-32C, and a read-back with TensorFlow's own parser."""

from __future__ import annotations

import numpy as np
import pytest

from busgan.stylegan2 import tblog


def test_crc32c_known_value():
    assert tblog.crc32c(b"123456789") == 0xE3069283


def test_tensorflow_reads_the_events(tmp_path):
    tf = pytest.importorskip("tensorflow")
    w = tblog.EventWriter(tmp_path)
    w.scalars(7, {"Loss/G": 1.5, "ADA/p": 0.25})
    w.image(8, "fakes", np.full((4, 6, 1), 200, np.uint8))
    w.close()
    events = list(tf.compat.v1.train.summary_iterator(str(w.path)))
    assert events[0].file_version == "brain.Event:2"
    vals = {v.tag: v.simple_value for v in events[1].summary.value}
    assert events[1].step == 7 and vals == {"Loss/G": 1.5, "ADA/p": 0.25}
    img = events[2].summary.value[0].image
    assert (img.height, img.width, img.colorspace) == (4, 6, 1)
    decoded = tf.io.decode_png(img.encoded_image_string).numpy()
    assert decoded.shape == (4, 6, 1) and (decoded == 200).all()
