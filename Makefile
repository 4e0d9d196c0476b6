# methanemap — make demo, make test, make bench. Run as root on Debian 12,
# or with the packages below already installed.
SHELL := /bin/bash
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
BIN := bin/methanemap
DEMO := demo-out
APT_PACKAGES := libgdal-dev gdal-bin

.PHONY: deps build test demo bench fuzz clean

# deps installs what the build and tests need when it is missing.
deps:
	@missing=""; \
	command -v gdal-config >/dev/null || missing="$$missing libgdal-dev"; \
	command -v gdalwarp >/dev/null || missing="$$missing gdal-bin"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@$(GO) mod download

build: deps
	$(GO) build -o $(BIN) ./cmd/methanemap

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# demo writes a fixture scene with one facility of each class and exports
# its chips (scoring arrives with the model).
demo: build
	rm -rf $(DEMO)
	./$(BIN) fixtures --out $(DEMO)/scene
	./$(BIN) chips --scene $(DEMO)/scene/scene.json --out $(DEMO)/chips
	@echo
	@echo "demo scene:  $(DEMO)/scene  (naip.tif, s2/*.tif, s1.tif, scene.json, truth.geojson)"
	@echo "demo chips:  $(DEMO)/chips  (one GeoTIFF per chip, chips.geojson indexes them)"
	@echo "try:         gdalinfo $$(ls $(DEMO)/chips/*/*.tif | head -1)"

# bench measures chip building against GDAL's raw read of the same pixels,
# and peak memory of chip iteration over 5 km and 20 km scenes.
bench: build
	$(GO) test -run '^$$' -bench ChipBuilding -benchtime 5x -timeout 30m ./tiles/
	$(GO) test -run '^$$' -bench ChipMemory -benchtime 1x -timeout 30m ./tiles/

fuzz: deps
	$(GO) test -run '^$$' -fuzz FuzzParseScene -fuzztime 30s .
	$(GO) test -run '^$$' -fuzz FuzzParseMessage -fuzztime 30s ./ingest/

clean:
	rm -rf bin $(DEMO)
