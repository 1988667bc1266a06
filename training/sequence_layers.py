"""Masked layers for the reference sequence model (`models.build_lstm`).

Sequences arrive right-padded, ``[batch, time, dim]``, with their lengths; every layer
here takes the boolean ``[batch, time]`` mask (`LengthMask`) and gives the same
result on the real steps whatever the padded steps hold and however far the batch is
padded, so that a sequence scores the same alone, in a batch, or served.

* `LengthMask`: lengths → the boolean mask of the real steps.
* `MaskedStandardize`: z-score per sequence and channel over its real steps (the
  statistics of one sequence, computed inside the model: serving does the same).
* `ZeroPadded`: padded steps set to 0 (before a convolution, whose windows reach past
  the end of a sequence, and after it, where bias and activation made them non-zero).
* `StridedLengths`: the lengths after a strided convolution, ``ceil(length / strides)``.
* `conv_front_end`: strided ``Conv1D`` layers that shorten long sequences before the
  recurrent layer; each pads ``(kernel_size - 1) // 2`` steps on the left and the rest on
  the right, whatever the batch's padded length, so a window's position does not depend
  on the batch (Keras's ``padding="same"`` centres by the padded length when strided).
* `MaskedPooling`: mean, max or both over the real steps.

Example:
    >>> import numpy as np
    >>> x = np.array([[[1.0], [3.0], [99.0]]], np.float32)
    >>> mask = np.array([[True, True, False]])
    >>> np.asarray(MaskedStandardize()(x, mask))[0, :, 0].round(3).tolist()
    [-1.0, 1.0, 0.0]
    >>> np.asarray(MaskedPooling("mean_max")(x, mask)).tolist()
    [[2.0, 3.0]]
    >>> np.asarray(StridedLengths(2)(np.array([5, 4, 1]))).tolist()
    [3, 2, 1]
"""

from __future__ import annotations

import keras
from keras import layers, ops

POOLINGS = ("last", "mean", "max", "mean_max")


def _steps(mask):
    """``[batch, time]`` bool → ``[batch, time, 1]`` float and the real steps ``[batch, 1, 1]`` (at least 1)."""
    m = ops.expand_dims(ops.cast(mask, "float32"), -1)
    return m, ops.maximum(ops.sum(m, axis=1, keepdims=True), 1.0)


def _zeroed(x, mask):
    # `where`, not a product: a padded inf or NaN times 0 is NaN.
    return ops.where(ops.expand_dims(mask, -1), x, ops.zeros_like(x))


@keras.saving.register_keras_serializable(package="tfstream")
class LengthMask(layers.Layer):
    """``[batch]`` lengths and a ``[batch, time, dim]`` padded sequence → a boolean
    ``[batch, time]`` mask that is True on real steps."""

    def call(self, sequence, lengths):
        steps = ops.arange(ops.shape(sequence)[1], dtype="int64")
        return ops.less(ops.expand_dims(steps, 0), ops.expand_dims(ops.cast(lengths, "int64"), 1))

    def compute_output_shape(self, sequence_shape, lengths_shape):
        return tuple(sequence_shape[:2])


@keras.saving.register_keras_serializable(package="tfstream")
class ZeroPadded(layers.Layer):
    """Sets the padded steps of ``[batch, time, dim]`` to 0."""

    def call(self, x, mask):
        return _zeroed(x, mask)


@keras.saving.register_keras_serializable(package="tfstream")
class MaskedStandardize(layers.Layer):
    """``(x - mean) / sqrt(var + epsilon)`` per sequence and channel, the mean and the
    (biased) variance over the sequence's real steps; padded steps come out 0."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x, mask):
        x = _zeroed(x, mask)
        m, n = _steps(mask)
        mean = ops.sum(x, axis=1, keepdims=True) / n
        var = ops.sum(ops.square(x - mean) * m, axis=1, keepdims=True) / n
        return _zeroed((x - mean) / ops.sqrt(var + self.epsilon), mask)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfstream")
class StridedLengths(layers.Layer):
    """Lengths ``[batch]`` → ``ceil(length / strides)``: the real steps after a
    convolution with these strides. `conv_front_end` gives ``ceil(time / strides)`` output
    steps; output step ``j``'s window starts ``(kernel_size - 1) // 2`` steps before input
    step ``j × strides``, and the output step is real when that input step is."""

    def __init__(self, strides: int, **kwargs):
        super().__init__(**kwargs)
        self.strides = int(strides)

    def call(self, lengths):
        lengths = ops.cast(lengths, "int64")
        return ops.floor_divide(lengths + (self.strides - 1), self.strides)

    def get_config(self):
        return {**super().get_config(), "strides": self.strides}


@keras.saving.register_keras_serializable(package="tfstream")
class MaskedPooling(layers.Layer):
    """``[batch, time, dim]`` → ``[batch, dim]`` (``mean_max``: ``[batch, 2 × dim]``) over
    the real steps; a sequence without steps pools to 0."""

    def __init__(self, mode: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLINGS[1:]:
            raise ValueError(f"MaskedPooling: mode must be one of {POOLINGS[1:]}; got {mode!r}")
        self.mode = mode
        self.supports_masking = True  # it consumes the recurrent layer's mask: pooled, nothing is left to mask

    def compute_mask(self, x, mask=None):
        return None

    def call(self, x, mask):
        m, n = _steps(mask)
        parts = []
        if self.mode in ("mean", "mean_max"):
            parts.append(ops.sum(_zeroed(x, mask), axis=1) / n[:, 0])
        if self.mode in ("max", "mean_max"):
            lowest = ops.full_like(x, -3.4e38)
            top = ops.max(ops.where(ops.expand_dims(mask, -1), x, lowest), axis=1)
            parts.append(ops.where(ops.any(mask, axis=1, keepdims=True), top, ops.zeros_like(top)))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, x_shape, mask_shape=None):
        return (x_shape[0], x_shape[-1] * (2 if self.mode == "mean_max" else 1))

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def conv_front_end(x, lengths, *, num_layers: int, filters: int, kernel_size: int, strides: int):
    """``num_layers`` strided ``Conv1D`` (ReLU) over the right-padded sequence ``x``.

    Returns the shortened sequence and its lengths; the padded steps of the input and of
    every layer's output are 0, so nothing past a sequence's end reaches a real step
    except as the zeros a sequence ending there would be padded with.
    """
    left = (kernel_size - 1) // 2
    for i in range(num_layers):
        x = ZeroPadded(name=f"conv_{i}_zero_padded")(x, LengthMask(name=f"conv_{i}_input_mask")(x, lengths))
        x = layers.ZeroPadding1D((left, kernel_size - 1 - left), name=f"conv_{i}_pad")(x)
        x = layers.Conv1D(filters, kernel_size, strides=strides, padding="valid", activation="relu",
                          name=f"conv_{i}")(x)
        lengths = StridedLengths(strides, name=f"conv_{i}_lengths")(lengths)
    return x, lengths
