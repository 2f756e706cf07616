# darkroom: `make demo` runs the restoration demo end to end; `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,gen,ops,hosted
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install demo test upscalerjs test-fast lint format mypy bench clean all

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# MediaPipe's 250 KB selfie-segmentation model is read out of its wheel (never installed:
# it pins numpy < 2); see README, "Background removal".
MEDIAPIPE_WHEEL := .whl/.mediapipe-0.10.21

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0  # the CPU build; an open range pulls CUDA
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

# UpscalerJS's super-resolution models (MIT, npm): `npm pack` checks the registry's integrity
# hash. Without npm the real-weights upscale tests skip and say why; see README, "Super-resolution".
UPSCALERJS := .npm/.upscalerjs-1.0.0

$(UPSCALERJS):
	mkdir -p .npm
	if command -v npm >/dev/null; then \
		for m in slim medium thick; do \
			(cd .npm && npm pack -q @upscalerjs/esrgan-$$m@1.0.0 >/dev/null) \
				|| echo "npm pack @upscalerjs/esrgan-$$m failed: real-weights upscale tests will skip"; \
		done; \
	else echo "npm not found: real-weights upscale tests will skip"; fi
	touch $@

upscalerjs: $(UPSCALERJS)

$(MEDIAPIPE_WHEEL): | $(BIN)/python
	$(BIN)/pip download -q --no-deps --only-binary=:all: mediapipe==0.10.21 -d .whl \
		|| echo "mediapipe wheel not available: selfie-model tests will skip"
	touch $@

install: $(STAMP)

demo: install $(MEDIAPIPE_WHEEL) $(UPSCALERJS)
	$(BIN)/darkroom demo --out ./out

test: install $(MEDIAPIPE_WHEEL) $(UPSCALERJS)
	$(BIN)/pytest -q tests

test-fast: install
	$(BIN)/pytest -q tests -m "not integration and not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

mypy: install
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

all: lint test

clean:
	rm -rf $(VENV) out .darkroom .pytest_cache .mypy_cache .ruff_cache
