"""Build for firmware-py.

The repository keeps one folder per role (firmware_py/, kernels/, drivers/, models/, bench/);
package_dir installs them under the single import name ``firmware_py`` so that no generic
top-level name (``kernels``, ``models``) collides with another distribution.
"""
import glob
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# -O3 for the vectoriser; no -march=native: the Raspberry Pi is not the build machine.
# FIRMWARE_PY_OPENMP=0 builds without OpenMP (the kernels then run single-threaded).
COMPILE_ARGS = ["-O3", "-ffast-math" if os.environ.get("FIRMWARE_PY_FAST_MATH") else "-fno-math-errno"]
LINK_ARGS = []
if os.environ.get("FIRMWARE_PY_OPENMP", "1") != "0" and sys.platform.startswith("linux"):
    COMPILE_ARGS.append("-fopenmp")
    LINK_ARGS.append("-fopenmp")
if os.environ.get("FIRMWARE_PY_VEC_REPORT"):
    COMPILE_ARGS.append("-fopt-info-vec-optimized")


# The kernels' C (kernels/c/): each .pyx that calls into C names its .c files here; all of
# them include the shared kernels/c/fwpy_simd.h.
KERNEL_C = os.path.join("kernels", "c")
C_SOURCES = {
    "_preprocess": [os.path.join(KERNEL_C, "fwpy_fused.c")],
    "_linear": [os.path.join(KERNEL_C, "fwpy_linear.c")],
}


def kernel_extensions():
    exts = []
    # Every header as a dependency: editing one rebuilds the extensions (build_ext compares them
    # with the built module; cythonize only tracks the .pyx).
    headers = sorted(glob.glob(os.path.join(KERNEL_C, "*.h")))
    for pyx in sorted(glob.glob(os.path.join("kernels", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                f"firmware_py.kernels.{name}",
                [pyx] + C_SOURCES.get(name, []),
                include_dirs=[numpy.get_include(), KERNEL_C],
                depends=headers,
                extra_compile_args=COMPILE_ARGS,
                extra_link_args=LINK_ARGS,
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return exts


def mapped_packages():
    """firmware_py.* from firmware_py/, plus the role folders mapped under firmware_py."""
    packages = ["firmware_py"] + [f"firmware_py.{p}" for p in find_packages("firmware_py")]
    package_dir = {"firmware_py": "firmware_py"}
    for folder in ("kernels", "drivers", "models", "bench"):
        packages.append(f"firmware_py.{folder}")
        package_dir[f"firmware_py.{folder}"] = folder
        for sub in find_packages(folder):
            packages.append(f"firmware_py.{folder}.{sub}")
    return packages, package_dir


PACKAGES, PACKAGE_DIR = mapped_packages()

# The TFLite interpreter package (README "Interpreter" says why ai-edge-litert is the default);
# FIRMWARE_PY_INTERPRETER=tflite-runtime at install picks the other one, alone. tflite-runtime 2.14
# is the last release and has wheels for Python <= 3.11 only. ai-edge-litert is pinned to a minor
# release: tests/data/tier_outputs_x86_64.npz holds its exact outputs.
INTERPRETERS = {
    "ai-edge-litert": "ai-edge-litert>=2.3,<2.4",
    "tflite-runtime": "tflite-runtime>=2.14,<2.15",
}
INTERPRETER = os.environ.get("FIRMWARE_PY_INTERPRETER", "ai-edge-litert")
if INTERPRETER not in INTERPRETERS:
    sys.exit(f"FIRMWARE_PY_INTERPRETER={INTERPRETER}: use one of {', '.join(INTERPRETERS)}")

RUNTIME_DEPS = [
    INTERPRETERS[INTERPRETER],
    "numpy>=1.23,<2; python_version < '3.12'",
    "numpy>=1.26; python_version >= '3.12'",
    "pyserial>=3.5,<4",
    "pyyaml>=6.0,<7",
    "psutil>=5.9,<8",
    # CRC-32C in hardware (SSE4.2 / ARMv8 CRC) for the probe protocol's integrity check.
    "crc32c>=2.3,<3",
    # Ed25519 signature of the model manifest.
    "cryptography>=41,<51",
    # I2C fuel gauge (MAX17048); pure Python (py3-none-any wheel), so it installs on aarch64 as is.
    "smbus2>=0.4,<1",
]

setup(
    name="firmware-py",
    version="0.1.0",
    description="Headless runtime for handheld ultrasound probes: probe link, SIMD preprocessing, "
    "int8 inference on Edge TPU / NPU with CPU twins, battery-aware model tiers",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(HERE, "README.md"))
    else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "firmware_py": ["config/*.yaml"],
        "firmware_py.models": ["manifest.yaml", "manifest.yaml.sig", "*.tflite", "keys/*.pub"],
        "firmware_py.kernels": ["*.pyx", "*.pxd", "c/*.c", "c/*.h"],
    },
    ext_modules=cythonize(
        kernel_extensions(),
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
    install_requires=RUNTIME_DEPS,
    extras_require={
        "test": [
            "pytest>=7.4",
            "pytest-benchmark>=4.0",
            "hypothesis>=6.80",
            "pillow>=10",
            "pyte>=0.8",  # the console tests' terminal emulator: the screen a technician sees
            "matplotlib>=3.7",  # the bench tools' plots (bench battery) are drawn in the suite too
        ],
        # OpenCV is the kernel benchmark's baseline only: no test needs it, never on the device.
        # matplotlib draws bench e2e's plots.
        "bench": ["opencv-python-headless>=4.8,<5", "pillow>=10", "matplotlib>=3.7"],
        # `make fuzz`: coverage-guided fuzzing of the parser and the console (tests/fuzz/); PyPI has
        # a CPython 3.11 manylinux x86_64 wheel (checked: 2.3.0, 3.0.0). Never on the device.
        "fuzz": ["atheris>=2.3"],
        # Model building only, never on the device. TensorFlow 2.14 is pinned: its converter emits
        # op versions the device's tflite-runtime 2.14 runs, its Keras 2 is what
        # tensorflow-model-optimization 0.7 (QAT) supports, and it accepts numpy<2.
        "train": [
            "tensorflow-cpu==2.14.1; platform_machine == 'x86_64'",
            "tensorflow==2.14.1; platform_machine == 'aarch64'",
            "tensorflow-model-optimization==0.7.5",
            "pillow>=10",
            "matplotlib>=3.7",
        ],
    },
    entry_points={"console_scripts": ["firmware-py=firmware_py.cli:main"]},
    zip_safe=False,
)
