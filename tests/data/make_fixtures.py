"""Regenerate the tiny TFLite fixtures the inference tests load (run by hand, never by pytest).

    python3 -m venv .venv-tf && .venv-tf/bin/pip install tensorflow-cpu==2.14.1 'numpy<2'
    .venv-tf/bin/python tests/data/make_fixtures.py

With the pinned TensorFlow 2.14.1 (setup.py's train extra) the output is byte-for-byte the committed
files (checked by running it twice and against the repository). One fixture is not made here:
fc_nobias_perchannel_int8.tflite is the earlier cls_int8.tflite, made by a newer TensorFlow with
Keras 3 (its tensor names say so), kept as it is because its 3-output FULLY_CONNECTED layer is
per-channel and has no bias -- the case tests/test_interpreter_fc_nobias.py guards; 2.14.1 quantizes
that layer per tensor.

TensorFlow is a build-time tool only; the committed .tflite files are what the tests use with the
real tflite_runtime Interpreter. The classifiers contain a RESHAPE node (Flatten) so the test delegate in tests/delegate/ has a node
it can claim and execute exactly (a byte copy). The weights are random (seeded): the fixtures exercise loading,
validation, quantization and decoding, not diagnosis.

Files written next to this script:
  cls_int8.tflite        int8 in/out classifier, input [1,32,32,1], 3 classes (softmax output)
  cls_int8_b.tflite      the same architecture with other weights (second tier for swap tests)
  cls_int8_48.tflite     int8 classifier whose input is [1,48,48,1] (shape-mismatch fixture)
  cls_float.tflite       float32 in/out classifier (float-where-int8-required fixture)
  cls_int16x8.tflite     16-bit activation / 8-bit weight quantization (unsupported quantization)
  seg_int8.tflite        int8 segmenter, input [1,32,32,1] -> [1,32,32,1] sigmoid mask
  cls_edgetpu.tflite     cls_int8.tflite with its FULLY_CONNECTED operator code rewritten (flatbuffer
                         object API) into the custom op "edgetpu-custom-op" -- not a real Edge TPU
                         compilation (edgetpu_compiler is not available here), but it is what a
                         plain CPU interpreter sees in an Edge TPU model: an unresolved custom op
                         of that name.
"""
import os

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

HERE = os.path.dirname(os.path.abspath(__file__))


def classifier(size, seed):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((size, size, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    # Flatten becomes a RESHAPE op: the node the test delegate (tests/delegate/) claims and runs.
    x = tf.keras.layers.Flatten()(x)
    # A seeded, non-zero bias: the converter drops an all-zero one, and tflite-runtime 2.14's
    # per-channel int8 FULLY_CONNECTED reads a null bias pointer on aarch64 (issue 17; the
    # bias-less case has its own fixture, fc_nobias_perchannel_int8.tflite).
    x = tf.keras.layers.Dense(3, bias_initializer=tf.keras.initializers.RandomNormal(stddev=0.5, seed=seed))(x)
    out = tf.keras.layers.Softmax()(x)
    return tf.keras.Model(inp, out)


def segmenter(size, seed):
    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((size, size, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    out = tf.keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return tf.keras.Model(inp, out)


def convert(model, size, mode="int8"):
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float":
        rng = np.random.default_rng(0)

        def rep():
            for _ in range(16):
                yield [rng.random((1, size, size, 1), dtype=np.float32)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        if mode == "int8":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        else:  # 16x8
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
            conv.inference_input_type = tf.int16
            conv.inference_output_type = tf.int16
    return conv.convert()


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def to_edgetpu_custom_op(data):
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for code in model.operatorCodes:
        if code.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED:
            code.builtinCode = schema.BuiltinOperator.CUSTOM
            code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            code.customCode = b"edgetpu-custom-op"
            code.version = 1
            break
    else:
        raise SystemExit("no FULLY_CONNECTED operator to rewrite")
    for op in model.subgraphs[0].operators:
        if model.operatorCodes[op.opcodeIndex].customCode == b"edgetpu-custom-op":
            op.builtinOptionsType = 0
            op.builtinOptions = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def main():
    cls = convert(classifier(32, 1), 32)
    write("cls_int8.tflite", cls)
    write("cls_int8_b.tflite", convert(classifier(32, 2), 32))
    write("cls_int8_48.tflite", convert(classifier(48, 3), 48))
    write("cls_float.tflite", convert(classifier(32, 1), 32, "float"))
    write("cls_int16x8.tflite", convert(classifier(32, 1), 32, "16x8"))
    write("seg_int8.tflite", convert(segmenter(32, 4), 32))
    write("cls_edgetpu.tflite", to_edgetpu_custom_op(cls))


if __name__ == "__main__":
    main()
