// Package configs holds methanemap's configuration: the Config struct, its
// defaults, YAML loading, METHANEMAP_* environment overrides and validation.
// The CLI loads it once (file, then environment, then flags) and copies the
// values into each package's options; no other package reads the
// environment or flags.
package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is everything a methanemap process can be told.
type Config struct {
	Model  Model  `yaml:"model"`
	Ingest Ingest `yaml:"ingest"`
	Tiles  Tiles  `yaml:"tiles"`
	Log    Log    `yaml:"log"`
	Feed   Feed   `yaml:"feed"`
}

// Feed configures `methanemap feed`, and the same loop inside `serve` when
// STAC is not empty.
type Feed struct {
	// STAC lists STAC API /search URLs; empty: serve runs no feed.
	STAC []string `yaml:"stac"`
	// Post searches with POST (JSON body) instead of GET.
	Post bool `yaml:"post"`
	// Collections names each sensor's collections (naip, s2, s1), comma-separated.
	Collections map[string]string `yaml:"collections"`
	// Headers are sent with every search request (API keys, tokens).
	Headers map[string]string `yaml:"headers"`
	// BBox limits the search: minlon, minlat, maxlon, maxlat.
	BBox []float64 `yaml:"bbox"`
	// AOI is a GeoJSON file: the search covers its bounds, Items that do
	// not touch it are left, and it becomes each scene's AOI.
	AOI string `yaml:"aoi"`
	// Datetime is the RFC 3339 interval of the primary sensor's Items
	// ("": the last 30 days).
	Datetime string `yaml:"datetime"`
	// MaxCloud leaves out Sentinel-2 Items cloudier than this, in percent.
	MaxCloud float64 `yaml:"max_cloud"`
	// PairWindow and S1Window: how far from the NAIP date Sentinel-2 and
	// Sentinel-1 Items may be.
	PairWindow time.Duration `yaml:"pair_window"`
	S1Window   time.Duration `yaml:"s1_window"`
	// MosaicDir is where mosaic VRTs are written; the workers must be
	// allowed to read it.
	MosaicDir string `yaml:"mosaic_dir"`
	// HrefQuery is appended to every asset URL (a SAS token or signature).
	HrefQuery string `yaml:"href_query"`
	// Interval is the time between passes.
	Interval time.Duration `yaml:"interval"`
	// Rate is the most requests per second sent to a catalogue (0: no limit).
	Rate float64 `yaml:"rate"`
	// Timeout bounds each request.
	Timeout time.Duration `yaml:"timeout"`
	// Retries is how many attempts a request gets on 429, 5xx and network errors.
	Retries int `yaml:"retries"`
	// Limit is the number of Items per page.
	Limit int `yaml:"limit"`
}

// Log configures log/slog output on standard error.
type Log struct {
	Format string `yaml:"format"` // text (default) or json
	Level  string `yaml:"level"`  // debug, info (default), warn, error
}

// Model configures the classifier.
type Model struct {
	// Dir is the directory of the model card and ONNX file; empty means the
	// demo model built into the binary.
	Dir string `yaml:"dir"`
	// Backend is auto (ONNX Runtime when its library loads, else onnx-go),
	// onnxruntime or onnxgo.
	Backend string `yaml:"backend"`
	// ORTLibrary is the path of ONNX Runtime's shared library, tried before
	// the place make deps installs it and the system's search path.
	ORTLibrary string `yaml:"onnxruntime_lib"`
	// Threads is ONNX Runtime's intra-op thread count (0: its default).
	Threads int `yaml:"threads"`
	// BatchSize is how many chips one inference call scores (default 16).
	BatchSize int `yaml:"batch_size"`
}

// Ingest configures raster reading.
type Ingest struct {
	// GDALCacheMB bounds GDAL's block cache (default 64 MiB; GDAL's own
	// default is 5% of the machine's memory). Chips are warped a block of
	// chips at a time, so each source tile is read about once and a larger
	// cache buys little speed but raises the peak memory with the scene
	// (measured on 5 / 20 km scenes: 216 / 252 MiB at 64, 251 / 455 MiB at
	// 256, the same cut time). The GDAL_CACHEMAX environment variable, when
	// set, wins.
	GDALCacheMB int `yaml:"gdal_cache_mb"`
	// Allow lists the directories and URL prefixes the daemon may read
	// scene hrefs from (default: its data directory). Offline commands read
	// what their user names.
	Allow []string `yaml:"allow"`
}

// Tiles configures the chip grid and the skip rules.
type Tiles struct {
	// StrideM is the scan stride in metres (0: the model card's).
	StrideM int `yaml:"stride_m"`
	// MinValid is the smallest share of pixels with data in every sensor a
	// chip needs to be scored (default 0.5).
	MinValid float64 `yaml:"min_valid"`
	// MaxCloud is the largest cloud share a scored chip may have (default 0.5).
	MaxCloud float64 `yaml:"max_cloud"`
	// MaxChips is the most chip cells one scene may span (default 250,000):
	// a larger scene is refused (give it an AOI) rather than enumerated.
	MaxChips int `yaml:"max_chips"`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Model:  Model{Backend: "auto", BatchSize: 16},
		Ingest: Ingest{GDALCacheMB: 64},
		Tiles:  Tiles{MinValid: 0.5, MaxCloud: 0.5, MaxChips: 250_000},
		Log:    Log{Format: "text", Level: "info"},
		Feed: Feed{Collections: map[string]string{"naip": "naip", "s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc"},
			Headers: map[string]string{}, MaxCloud: 20, PairWindow: 30 * 24 * time.Hour, S1Window: 30 * 24 * time.Hour,
			MosaicDir: "./data/mosaics", Interval: 10 * time.Minute, Rate: 2, Timeout: 30 * time.Second, Retries: 5, Limit: 100},
	}
}

// Load reads a YAML file over the defaults (unknown keys are errors), then
// applies environment overrides. An empty path loads only the defaults and
// the environment.
func Load(path string) (Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("configs: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("configs: %s: %w", path, err)
		}
	}
	if err := c.applyEnv(os.LookupEnv); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// applyEnv reads METHANEMAP_MODEL_DIR, METHANEMAP_MODEL_BACKEND,
// ONNXRUNTIME_LIB, METHANEMAP_MODEL_THREADS, METHANEMAP_MODEL_BATCH_SIZE,
// METHANEMAP_INGEST_GDAL_CACHE_MB, METHANEMAP_TILES_STRIDE_M,
// METHANEMAP_TILES_MIN_VALID and METHANEMAP_TILES_MAX_CLOUD.
func (c *Config) applyEnv(lookup func(string) (string, bool)) error {
	strs := map[string]*string{"METHANEMAP_MODEL_DIR": &c.Model.Dir, "METHANEMAP_MODEL_BACKEND": &c.Model.Backend, "ONNXRUNTIME_LIB": &c.Model.ORTLibrary,
		"METHANEMAP_LOG_FORMAT": &c.Log.Format, "METHANEMAP_LOG_LEVEL": &c.Log.Level}
	for k, p := range strs {
		if v, ok := lookup(k); ok {
			*p = v
		}
	}
	ints := map[string]*int{"METHANEMAP_TILES_STRIDE_M": &c.Tiles.StrideM, "METHANEMAP_INGEST_GDAL_CACHE_MB": &c.Ingest.GDALCacheMB,
		"METHANEMAP_MODEL_THREADS": &c.Model.Threads, "METHANEMAP_MODEL_BATCH_SIZE": &c.Model.BatchSize,
		"METHANEMAP_TILES_MAX_CHIPS": &c.Tiles.MaxChips}
	for k, p := range ints {
		if v, ok := lookup(k); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("configs: %s=%q: not an integer", k, v)
			}
			*p = n
		}
	}
	floats := map[string]*float64{"METHANEMAP_TILES_MIN_VALID": &c.Tiles.MinValid, "METHANEMAP_TILES_MAX_CLOUD": &c.Tiles.MaxCloud}
	for k, p := range floats {
		if v, ok := lookup(k); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("configs: %s=%q: not a number", k, v)
			}
			*p = f
		}
	}
	return nil
}

// Validate names the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.Model.Backend != "auto" && c.Model.Backend != "onnxruntime" && c.Model.Backend != "onnxgo":
		return fmt.Errorf("configs: model.backend: want auto, onnxruntime or onnxgo, got %q", c.Model.Backend)
	case c.Model.Threads < 0:
		return fmt.Errorf("configs: model.threads: must not be negative, got %d", c.Model.Threads)
	case c.Model.BatchSize < 1 || c.Model.BatchSize > 1024:
		return fmt.Errorf("configs: model.batch_size: want 1 to 1024, got %d", c.Model.BatchSize)
	case c.Log.Format != "text" && c.Log.Format != "json":
		return fmt.Errorf("configs: log.format: want text or json, got %q", c.Log.Format)
	case c.Log.Level != "debug" && c.Log.Level != "info" && c.Log.Level != "warn" && c.Log.Level != "error":
		return fmt.Errorf("configs: log.level: want debug, info, warn or error, got %q", c.Log.Level)
	case c.Ingest.GDALCacheMB < 16:
		return fmt.Errorf("configs: ingest.gdal_cache_mb: want at least 16, got %d", c.Ingest.GDALCacheMB)
	case c.Tiles.StrideM < 0:
		return fmt.Errorf("configs: tiles.stride_m: must not be negative, got %d", c.Tiles.StrideM)
	case !(c.Tiles.MinValid >= 0 && c.Tiles.MinValid <= 1): // NaN too
		return fmt.Errorf("configs: tiles.min_valid: must be in [0, 1], got %v", c.Tiles.MinValid)
	case !(c.Tiles.MaxCloud >= 0 && c.Tiles.MaxCloud <= 1):
		return fmt.Errorf("configs: tiles.max_cloud: must be in [0, 1], got %v", c.Tiles.MaxCloud)
	case c.Tiles.MaxChips < 1:
		return fmt.Errorf("configs: tiles.max_chips: must be at least 1, got %d", c.Tiles.MaxChips)
	case !(c.Feed.MaxCloud >= 0 && c.Feed.MaxCloud <= 100) || !(c.Feed.Rate >= 0):
		return fmt.Errorf("configs: feed.max_cloud must be in [0, 100] and feed.rate not negative")
	case len(c.Feed.BBox) != 0 && len(c.Feed.BBox) != 4:
		return fmt.Errorf("configs: feed.bbox: want [minlon, minlat, maxlon, maxlat], got %d numbers", len(c.Feed.BBox))
	case c.Feed.Interval <= 0 || c.Feed.Timeout <= 0 || c.Feed.Retries < 1 || c.Feed.Limit < 1 || c.Feed.Rate < 0:
		return fmt.Errorf("configs: feed: interval and timeout must be positive, retries and limit at least 1, rate not negative")
	}
	for k := range c.Feed.Collections {
		if k != "naip" && k != "s2" && k != "s1" {
			return fmt.Errorf("configs: feed.collections.%s: want naip, s2 or s1", k)
		}
	}
	return nil
}
