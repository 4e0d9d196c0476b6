# methanemap — make demo, make test, make bench. Run as root on Debian 12,
# or with the packages below already installed.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
BIN := bin/methanemap
DEMO := demo-out
# the training script (training/train.py) and its smoke test
PY_PACKAGES := python3-torch python3-torchvision python3-onnx python3-numpy python3-pil python3-yaml
# ONNX Runtime 1.24.1 (what onnxruntime_go v1.27.0 expects), taken from the
# onnxruntime-node package of the npm registry; checked by sha256.
ORT_VERSION := 1.24.1
ORT_SHA256 := 53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4
ORT_DIR := /usr/local/lib/methanemap
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.1

.PHONY: deps ort build test demo eval train bench profile fuzz clean

# deps installs what the build and tests need when it is missing.
deps:
	@missing=""; \
	command -v gdal-config >/dev/null || missing="$$missing libgdal-dev"; \
	command -v gdalwarp >/dev/null || missing="$$missing gdal-bin"; \
	command -v nats-server >/dev/null || missing="$$missing nats-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	/usr/bin/python3 -c "import torch, torchvision, onnx, numpy, PIL, yaml" 2>/dev/null || missing="$$missing $(PY_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(MAKE) --no-print-directory ort
	@command -v nats >/dev/null || { echo "installing the nats CLI"; GOBIN=/usr/local/bin $(GO) install github.com/nats-io/natscli/nats@v0.5.0; }
	@$(GO) mod download

# ort installs ONNX Runtime's shared library where the binary looks first.
ort:
	@if [ ! -f $(ORT_LIB) ] || ! echo "$(ORT_SHA256)  $(ORT_LIB)" | sha256sum -c --status; then \
		echo "installing ONNX Runtime $(ORT_VERSION) to $(ORT_LIB)"; \
		command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null; }; \
		tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent onnxruntime-node@$(ORT_VERSION) >/dev/null && \
		tar xzf onnxruntime-node-$(ORT_VERSION).tgz package/bin/napi-v6/linux/x64/libonnxruntime.so.1 && \
		echo "$(ORT_SHA256)  package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --status && \
		mkdir -p $(ORT_DIR) && install -m 0644 package/bin/napi-v6/linux/x64/libonnxruntime.so.1 $(ORT_LIB) && \
		cd / && rm -rf $$tmp; \
	fi

build: deps
	$(GO) build -o $(BIN) ./cmd/methanemap

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# demo writes a fixture scene with one facility of each class; runs the
# daemon on its embedded broker, queues the scene, prints the detections as
# they arrive and writes them to files, then stops the daemon; scores the
# same scene offline, exports its chips, and checks the scores against the
# planted truth.
demo: build
	rm -rf $(DEMO)
	./$(BIN) fixtures --out $(DEMO)/scene
	./$(BIN) model inspect
	scripts/demo-daemon.sh ./$(BIN) $(DEMO)/scene/scene.json $(DEMO)/daemon
	./$(BIN) score --scene $(DEMO)/scene/scene.json -o $(DEMO)/detections.geojson --sites $(DEMO)/sites.geojson
	./$(BIN) chips --scene $(DEMO)/scene/scene.json --out $(DEMO)/chips
	./$(BIN) eval --scene $(DEMO)/scene/scene.json
	@echo
	@echo "demo scene:      $(DEMO)/scene  (naip.tif, s2/*.tif, s1.tif, scene.json, truth.geojson)"
	@echo "from the daemon: $(DEMO)/daemon/*.detections.gpkg, *.sites.gpkg, live.geojsonl (open in QGIS)"
	@echo "offline score:   $(DEMO)/detections.geojson, $(DEMO)/sites.geojson"
	@echo "chips:           $(DEMO)/chips  (one GeoTIFF per chip, chips.geojson indexes them)"
	@echo "try:             ogrinfo -so -al $(DEMO)/daemon/*.detections.gpkg"

# eval prints the demo model's per-class AUPRC on held-out synthetic scenes.
eval: build
	./$(BIN) eval --held-out 6

# train regenerates the demo model: a METER-ML-layout dataset of fixture
# locations, then training/train.py (about 10 minutes on 2 cores).
train: build
	rm -rf $(DEMO)/dataset
	./$(BIN) fixtures --dataset 900 --seed 1 --out $(DEMO)/dataset
	/usr/bin/python3 training/train.py --data $(DEMO)/dataset --card models/demo/model.yaml --out models/demo --epochs 30 --seed 1

# bench measures, in one run on the same fixtures: chip building against
# GDAL's raw read of the same pixels, peak memory of chip iteration over
# 5, 10 and 20 km scenes, inference per backend and batch size (demo model,
# and DenseNet-121 at 720 x 720), score end to end on a 10 km scene, the
# same for DenseNet-121 against its inference alone, and daemon
# scenes/minute with 1 and 2 worker processes. The go test output
# (benchstat's format) goes to bench/raw.txt; the table of where the time
# goes, with each target as a ratio, is printed and written to
# bench/results.json.
BENCH = set -o pipefail; $(GO) test -run '^$$' -timeout 30m
bench: build
	mkdir -p bench
	: > bench/raw.txt
	$(BENCH) -bench ChipBuilding -benchtime 5x ./tiles/ | tee -a bench/raw.txt
	$(BENCH) -bench ChipMemory -benchtime 1x ./tiles/ | tee -a bench/raw.txt
	$(BENCH) -bench . -benchtime 20x ./model/ | tee -a bench/raw.txt
	$(BENCH) -bench Score10km -benchtime 2x ./cmd/methanemap/ | tee -a bench/raw.txt
	$(BENCH) -bench DenseNetScore -benchtime 2x ./cmd/methanemap/ | tee -a bench/raw.txt
	$(BENCH) -bench DaemonWorkers -benchtime 3x ./cmd/methanemap/ | tee -a bench/raw.txt
	$(GO) run ./internal/benchreport -json bench/results.json bench/raw.txt

# profile scores a 10 km fixture scene with pprof's CPU and allocation
# profiles (profile/cpu.pprof, profile/mem.pprof) and prints the top of each.
PROFILE := profile
profile: build
	mkdir -p $(PROFILE)
	test -f $(PROFILE)/scene/scene.json || $(BIN) fixtures --out $(PROFILE)/scene --size-km 10 >/dev/null
	$(BIN) score --scene $(PROFILE)/scene/scene.json -o $(PROFILE)/det.geojson --force --quiet \
		--cpuprofile $(PROFILE)/cpu.pprof --memprofile $(PROFILE)/mem.pprof
	$(GO) tool pprof -top -nodecount 20 $(BIN) $(PROFILE)/cpu.pprof
	$(GO) tool pprof -top -nodecount 20 -sample_index alloc_space $(BIN) $(PROFILE)/mem.pprof

fuzz: deps
	$(GO) test -run '^$$' -fuzz FuzzParseScene -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz FuzzParseMessage -fuzztime 30s ./ingest/
	$(GO) test -run '^$$' -fuzz FuzzAllowed -fuzztime 30s ./ingest/
	$(GO) test -run '^$$' -fuzz FuzzQuery -fuzztime 30s ./oapi/
	$(GO) test -run '^$$' -fuzz FuzzParseCard -fuzztime 30s ./model/

clean:
	rm -rf bin $(DEMO)
