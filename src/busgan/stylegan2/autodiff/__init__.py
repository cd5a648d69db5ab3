"""The one backend-specific seam: gradients, compilation and seeded random numbers.

Keras 3 has no backend-neutral gradient, and its random functions accept tensor seeds only on
JAX; everything else in busgan calls these functions and stays backend-neutral.
"""

from __future__ import annotations

import keras

if keras.backend.backend() == "jax":
    from busgan.stylegan2.autodiff.jax import (compile, device_info, input_grad, normal, uniform,
                                               value_and_grad)
elif keras.backend.backend() == "tensorflow":
    from busgan.stylegan2.autodiff.tensorflow import (compile, device_info, input_grad, normal,
                                                      uniform, value_and_grad)
else:  # pragma: no cover
    from busgan.errors import BusganError
    raise BusganError(f"KERAS_BACKEND={keras.backend.backend()}: StyleGAN2 needs 'jax' or 'tensorflow'")


def _i32(c: int) -> int:
    c &= 0xFFFFFFFF
    return c - (1 << 32) if c >= 1 << 31 else c


def _mix(x):
    """MurmurHash3's 32-bit finaliser (a bijection) on int32, with logical right shifts."""
    from keras import ops
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF))
    x = ops.multiply(x, _i32(0x85EBCA6B))
    x = ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 13), 0x7FFFF))
    x = ops.multiply(x, _i32(0xC2B2AE35))
    return ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, 16), 0xFFFF))


def fold_in(seed, k: int):
    """A new seed from ``seed`` (int32 ``[2]`` or per-sample ``[N, 2]``) and a constant ``k``.

    An integer hash in ``keras.ops`` (cheap to compile, identical on every backend); for a
    fixed ``k`` it maps distinct seeds to distinct seeds.
    """
    from keras import ops
    seed = ops.cast(seed, "int32")
    hi, lo = seed[..., 0], seed[..., 1]
    h = _mix(ops.bitwise_xor(hi, _i32(0x9E3779B9 * (k + 1))))
    l_ = _mix(ops.add(lo, h))
    return ops.stack([h, l_], axis=-1)


def seed_array(seeds):
    """int32 seeds of shape ``[..., 2]`` (high and low 32 bits) from Python/NumPy integers."""
    import numpy as np
    a = np.asarray(seeds, dtype=np.int64)
    return np.stack([(a >> 32) & 0xFFFFFFFF, a & 0xFFFFFFFF], axis=-1).astype(np.uint32).view(np.int32)


def seed_tensor(seed):
    """An int32 seed tensor (``[2]``, or ``[N, 2]`` for a list) for every seeded op."""
    return keras.ops.convert_to_tensor(seed_array(seed))


__all__ = ["compile", "device_info", "fold_in", "input_grad", "normal", "seed_array", "seed_tensor", "uniform", "value_and_grad"]
