// Command methanemap finds methane-emitting facilities in NAIP, Sentinel-2
// and Sentinel-1 imagery.
//
//	methanemap fixtures --out DIR [--center LON,LAT] [--size-km N] [--plant CLASS@LON,LAT ...]
//	methanemap chips --scene FILE [--aoi FILE] [--model DIR] --out DIR [--limit N]
//
// Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
)

// usageError is bad usage: exit code 2 with the usage text.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

type command struct {
	name, summary string
	run           func(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"fixtures", "write a synthetic three-sensor scene with planted facilities", runFixtures},
	{"chips", "export a scene's chips as GeoTIFFs", runChips},
	{"model", "model inspect PATH: a model's card, graph and the backends that run it", runModel},
	{"serve", "the daemon: NATS JetStream workers (embedded broker by default), /healthz, /readyz", runServe},
	{"enqueue", "queue scene files, STAC Items or ItemCollections (- for JSON lines on stdin)", runEnqueue},
	{"watch", "print the detection (or site) stream as GeoJSON lines", runWatch},
	{"feed", "follow STAC APIs: pair sensors into scenes and queue the new ones", runFeed},
	{"score", "score scenes over a region: detections and sites as GeoJSON, GeoPackage or FlatGeobuf", runScore},
	{"eval", "score fixture scenes and print per-class AUPRC against their truth", runEval},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		cfg, err := setup()
		if err != nil {
			return exitCode(err, stderr)
		}
		return exitCode(c.run(ctx, cfg, args[1:], stdout, stderr), stderr)
	}
	fmt.Fprintf(stderr, "methanemap: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "methanemap: %v\n", err)
		return 2
	case mm.IsPermanent(err):
		fmt.Fprintf(stderr, "methanemap: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "methanemap: %v\n", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: methanemap COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'methanemap COMMAND -h' for a command's flags.")
}

// newLogger logs to w as the configuration's log section says.
func newLogger(lc configs.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(lc.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// parseFlags parses args and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// setup loads the configuration (the YAML file named by METHANEMAP_CONFIG,
// then METHANEMAP_* overrides; flags come last, in each command) and applies
// process-wide settings: GDAL's block cache is bounded unless GDAL_CACHEMAX
// is set.
func setup() (configs.Config, error) {
	cfg, err := configs.Load(os.Getenv("METHANEMAP_CONFIG"))
	if err != nil {
		return cfg, mm.Permanent(err)
	}
	if os.Getenv("GDAL_CACHEMAX") == "" {
		if err := ingest.SetCacheMax(cfg.Ingest.GDALCacheMB); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}
