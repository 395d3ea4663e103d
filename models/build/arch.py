"""Architectures of the zoo (Keras functional models, int8-friendly ops only).

Classification: a residual CNN teacher; students built from MobileNetV2 inverted-residual blocks
(depthwise-separable, width multiplier, optional squeeze-and-excitation) and a SqueezeNet
fire-module net. Segmentation: a U-Net teacher and light depthwise-separable encoder-decoders.
Every model ends in logits (no softmax/sigmoid): int8 keeps more resolution there and the engine
applies the activation (manifest: applied_in_model: false). ReLU6 and hard-sigmoid gates keep
activation ranges bounded, which suits full-integer quantization.
"""
from __future__ import annotations


def _make_divisible(v: float, d: int = 8) -> int:
    return max(d, int(v + d / 2) // d * d)


def _conv_bn(L, x, filters, k=3, stride=1, act=True):
    x = L.Conv2D(filters, k, strides=stride, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU(6.0)(x) if act else x


def _se(L, x, ratio=4):
    """Squeeze-and-excitation: channel gates from global context (hard-sigmoid gate)."""
    c = x.shape[-1]
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(max(8, c // ratio), 1, activation="relu")(s)
    s = L.Conv2D(c, 1, activation="hard_sigmoid")(s)
    return L.Multiply()([x, s])


def _inverted_residual(L, x, out_c, stride, expand, se=False):
    in_c = x.shape[-1]
    y = x
    if expand != 1:
        y = _conv_bn(L, y, in_c * expand, k=1)
    y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(y)
    y = L.BatchNormalization()(y)
    y = L.ReLU(6.0)(y)
    if se:
        y = _se(L, y)
    y = L.Conv2D(out_c, 1, use_bias=False)(y)
    y = L.BatchNormalization()(y)
    if stride == 1 and in_c == out_c:
        y = L.Add()([x, y])
    return y


def mobilenet_v2(tf, res: int, n_out: int, alpha: float, se: bool, name: str, expand: int = 4):
    """MobileNetV2-style classifier scaled by width multiplier `alpha` and input resolution."""
    L = tf.keras.layers
    # (channels, repeats, first stride) per stage; shortened for 64-128 px ultrasound crops.
    stages = [(16, 1, 1), (24, 2, 2), (32, 2, 2), (64, 2, 2), (96, 1, 1), (128, 1, 2)]
    x = inp = L.Input((res, res, 1), name="image")
    x = _conv_bn(L, x, _make_divisible(16 * alpha), stride=2)
    for i, (c, n, s) in enumerate(stages):
        for j in range(n):
            x = _inverted_residual(L, x, _make_divisible(c * alpha), s if j == 0 else 1,
                                   1 if i == 0 else expand, se=se and i >= 2)
    x = _conv_bn(L, x, _make_divisible(256 * max(alpha, 0.5)), k=1)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.2)(x)
    return tf.keras.Model(inp, L.Dense(n_out, name="logits")(x), name=name)


def _fire(L, x, squeeze, expand):
    """Fire module: squeeze 1x1, then expand 1x1 and 3x3 side by side, batch norm after each conv
    (folded into the conv weights at conversion, so free at inference)."""
    def conv(y, f, k):
        y = L.Conv2D(f, k, padding="same", use_bias=False)(y)
        return L.ReLU()(L.BatchNormalization()(y))
    s = conv(x, squeeze, 1)
    return L.Concatenate()([conv(s, expand, 1), conv(s, expand, 3)])


def squeezenet(tf, res: int, n_out: int, name: str, width: int = 16, se: bool = False):
    """SqueezeNet 1.1-style fire modules (squeeze 1x1, expand 1x1 + 3x3), conv classifier head.

    Without batch norm the 64 px net trained from scratch never left the majority classes
    (balanced accuracy 0.48-0.54 over the 5 folds); SqueezeNet's original recipe relied on
    ImageNet-scale data and long schedules that we do not have. `se` adds a squeeze-and-excitation
    gate after every fire module (the attention the largest BUSI tier uses).
    """
    L = tf.keras.layers
    x = inp = L.Input((res, res, 1), name="image")
    x = _conv_bn(L, x, 2 * width, stride=2)
    x = L.MaxPooling2D(3, 2, padding="same")(x)
    # (squeeze, expand) per fire module; None = max-pool. With `se`, each module's output is gated.
    for f in ((width // 2 + 4, width * 2), (width // 2 + 4, width * 2), None, (width, width * 4),
              (width, width * 4), None, (width + width // 2, width * 6)):
        if f is None:
            x = L.MaxPooling2D(3, 2, padding="same")(x)
            continue
        x = _fire(L, x, *f)
        if se:
            x = _se(L, x)
    x = L.Dropout(0.2)(x)
    x = L.Conv2D(n_out, 1)(x)
    x = L.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inp, L.Activation("linear", name="logits")(x), name=name)


def resnet_teacher(tf, res: int, n_out: int, name: str, widths=(32, 64, 128, 192)):
    """Plain residual CNN: the largest model, trained first and used as the distillation teacher."""
    L = tf.keras.layers
    x = inp = L.Input((res, res, 1), name="image")
    x = _conv_bn(L, x, widths[0], stride=2)
    for i, w in enumerate(widths):
        sc = x if x.shape[-1] == w else _conv_bn(L, x, w, k=1, act=False)
        y = _conv_bn(L, x, w)
        y = _conv_bn(L, y, w, act=False)
        x = L.ReLU()(L.Add()([sc, y]))
        if i < len(widths) - 1:
            x = L.MaxPooling2D()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dropout(0.3)(x)
    return tf.keras.Model(inp, L.Dense(n_out, name="logits")(x), name=name)


def _ds_conv(L, x, filters, stride=1):
    """Depthwise-separable conv: 3x3 depthwise + 1x1 pointwise, BN + ReLU6 after each."""
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    return _conv_bn(L, x, filters, k=1)


def seg_net(tf, res: int, name: str, widths=(16, 32, 64, 96), separable=True, se=False):
    """Encoder-decoder with skip connections (U-Net shape); separable=False is the U-Net teacher.

    Decoder upsamples with nearest-neighbour resize + conv (int8-friendly, no transposed conv).
    Output: one channel of mask logits at the input resolution.
    """
    L = tf.keras.layers
    block = (lambda x, f, s=1: _ds_conv(L, x, f, s)) if separable else \
        (lambda x, f, s=1: _conv_bn(L, _conv_bn(L, x, f, stride=s), f))
    x = inp = L.Input((res, res, 1), name="image")
    x = _conv_bn(L, x, widths[0])
    skips = []
    for w in widths[1:]:
        skips.append(x)
        x = block(x, w, 2)
        x = block(x, w)
    if se:
        x = _se(L, x)
    for w, skip in zip(reversed(widths[:-1]), reversed(skips)):
        x = L.UpSampling2D(interpolation="nearest")(x)
        x = L.Concatenate()([x, skip])
        x = block(x, w)
    out = L.Conv2D(1, 1, name="logits")(x)
    return tf.keras.Model(inp, out, name=name)
