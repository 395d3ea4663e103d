# firmware-py: two commands on a fresh machine.
#   make demo   - create .venv, install, run the daemon against the built-in probe simulator
#   make test   - create .venv if needed, install with the test extras, run pytest
PYTHON   ?= python3
VENV     ?= .venv
DURATION ?= 20
OUT      ?= out
PYTEST_ARGS ?=
BIN       = $(VENV)/bin
SOURCES   = setup.py pyproject.toml $(wildcard kernels/*.pyx kernels/*.pxd kernels/c/*.c kernels/c/*.h)

DATA     ?= ../shared/data

.PHONY: demo test test-train test-interpreter test-arm64 bench bench-compare bench-baseline models fuzz-models fuzz soak clean help

help:
	@echo "make demo [DURATION=20]   run the daemon against the probe simulator for DURATION seconds"
	@echo "make test [PYTEST_ARGS=]  run the test suite"
	@echo "make bench                run the benchmarks, JSON into $(OUT)/bench"
	@echo "make bench-compare        micro-benchmarks (bench/micro) against the stored baseline"
	@echo "make bench-baseline       micro-benchmarks, stored as the new baseline"
	@echo "make test-train           install the train extra (TensorFlow) and run the model-build smoke test"
	@echo "make test-interpreter     the suite in .venv-NAME with only INTERPRETER=NAME installed [$(INTERPRETER)]"
	@echo "make test-arm64           the suite on emulated aarch64 (root) [ARM64_SUITE=$(ARM64_SUITE) ARM64_CPU=$(ARM64_CPU)]"
	@echo "make models DATA=DIR      rebuild the model zoo from the data (installs the train extra)"
	@echo "make fuzz-models N=200    N mutated, signed model files at engine start and reload [SEED=1]"
	@echo "make fuzz SECONDS=60      atheris on the frame parser, then on the console, SECONDS each (fuzz extra)"
	@echo "make soak FRAMES=100000   the daemon at the simulator's maximum rate: RSS, fds, threads, journal bound"

$(BIN)/python:
	@sh tools/bootstrap.sh "$(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# OpenCV (the kernel benchmark's baseline) comes with the bench extra only, not with test.
$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@

$(VENV)/.installed-train: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,train]'
	@touch $@

demo: $(VENV)/.installed
	@mkdir -p $(OUT)
	$(BIN)/firmware-py run --duration $(DURATION) --results $(OUT)/demo-results.jsonl \
		--journal $(OUT)/demo-journal.sqlite

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite runs 24 of these (tests/test_inference_isolation.py); this is the longer run.
N    ?= 200
SEED ?= 1
fuzz-models: $(VENV)/.installed-test
	$(BIN)/python tests/fuzz_models.py -n $(N) --seed $(SEED)

# bench/soak.py: firmware-py run at the probe simulator's maximum rate, journal and result sinks on;
# one PASS/FAIL line per target, non-zero exit on a failed one; bounded by SOAK_TIMEOUT seconds.
FRAMES       ?= 100000
SOAK_TIMEOUT ?= 1800
soak: $(VENV)/.installed-test
	$(BIN)/firmware-py bench soak --frames $(FRAMES) --timeout $(SOAK_TIMEOUT)

# Seeds in tests/fuzz/corpus/ (tests/fuzz/make_corpus.py); findings and new inputs go to $(OUT)/fuzz.
SECONDS ?= 60
$(VENV)/.installed-fuzz: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	@touch $@

fuzz: $(VENV)/.installed-fuzz
	$(BIN)/python tests/fuzz/fuzz.py parser --seconds $(SECONDS) --out $(OUT)/fuzz
	$(BIN)/python tests/fuzz/fuzz.py console --seconds $(SECONDS) --out $(OUT)/fuzz

test-train: $(VENV)/.installed-train
	$(BIN)/python -c "import tensorflow" && $(BIN)/python -m pytest tests/test_models_build_smoke.py tests/test_models_build_augment.py $(PYTEST_ARGS)

# The interpreter package that `make test` does not install (README "Interpreter"), alone in its venv.
INTERPRETER ?= tflite-runtime
test-interpreter:
	FIRMWARE_PY_INTERPRETER=$(INTERPRETER) $(MAKE) test VENV=.venv-$(INTERPRETER)

# aarch64 under qemu-user emulation of the Pi's CPU, cached in .cache/arm64 (tools/arm64-test.sh).
ARM64_SUITE ?= bookworm
ARM64_CPU   ?= cortex-a72
test-arm64:
	ARM64_SUITE=$(ARM64_SUITE) ARM64_CPU=$(ARM64_CPU) bash tools/arm64-test.sh

models: $(VENV)/.installed-train
	$(BIN)/firmware-py models build --data $(DATA)

bench: $(VENV)/.installed-bench
	@mkdir -p $(OUT)/bench
	$(BIN)/firmware-py bench link --json $(OUT)/bench/link.json
	$(BIN)/firmware-py bench kernels --json $(OUT)/bench/kernels.json
	$(BIN)/firmware-py bench inference --json $(OUT)/bench/inference.json
	$(BIN)/firmware-py bench e2e --json $(OUT)/bench/e2e.json --markdown $(OUT)/bench/e2e.md --plots $(OUT)/bench/e2e

# pytest-benchmark micro-benchmarks (kernels, parser, decode); not collected by `make test` (testpaths).
# The baseline is per machine: store one on the board you compare on (make bench-baseline).
MICRO = $(BIN)/python -m pytest -p no:cacheprovider bench/micro --benchmark-storage=file://bench/micro/baseline \
	--benchmark-sort=name --benchmark-columns=min,median,iqr,rounds
bench-compare: $(VENV)/.installed-bench
	$(MICRO) --benchmark-compare $(PYTEST_ARGS)

bench-baseline: $(VENV)/.installed-bench
	$(MICRO) --benchmark-save=baseline $(PYTEST_ARGS)

clean:
	rm -rf build *.egg-info kernels/*.c kernels/*.so $(OUT)
