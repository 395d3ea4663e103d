"""Training pipeline for the shipped int8 model tiers (installed as firmware_py.models.build).

TensorFlow is imported only inside the training modules, never here: the daemon and the
`evaluate` path (tflite-runtime + firmware_py.kernels) must work without it.
"""
