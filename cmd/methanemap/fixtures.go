package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/paulmach/orb"
)

// plantFlags collects repeated --plant CLASS@LON,LAT values.
type plantFlags []fixtures.Plant

func (p *plantFlags) String() string { return fmt.Sprint(len(*p)) }

func (p *plantFlags) Set(v string) error {
	class, at, ok := strings.Cut(v, "@")
	if !ok {
		return fmt.Errorf("want CLASS@LON,LAT, got %q", v)
	}
	c, err := mm.ParseClass(class)
	if err != nil {
		return err
	}
	pt, err := parseLonLat(at)
	if err != nil {
		return err
	}
	*p = append(*p, fixtures.Plant{Class: c, Lon: pt[0], Lat: pt[1]})
	return nil
}

func parseLonLat(s string) (orb.Point, error) {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return orb.Point{}, fmt.Errorf("want LON,LAT, got %q", s)
	}
	lon, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lat, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 != nil || err2 != nil || lon < -180 || lon > 180 || lat < -90 || lat > 90 {
		return orb.Point{}, fmt.Errorf("want LON,LAT in degrees (lon first), got %q", s)
	}
	return orb.Point{lon, lat}, nil
}

func runFixtures(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fixtures", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write the scene into (required)")
	center := fs.String("center", fmt.Sprintf("%g,%g", fixtures.DefaultCenter[0], fixtures.DefaultCenter[1]), "scene centre as LON,LAT")
	size := fs.Float64("size-km", 5, "side of the square scene in km")
	seed := fs.Uint64("seed", 1, "random seed")
	id := fs.String("id", "", "scene id (default derived from the centre)")
	noCloud := fs.Bool("no-cloud", false, "leave the sky clear")
	baseline := fs.String("s2-baseline", mm.BaselineOffsetFrom, "Sentinel-2 processing baseline of the DNs (before 04.00: without the +1000 offset)")
	s1Units := fs.String("s1-units", mm.S1DB, "Sentinel-1 values in db, power or amplitude")
	empty := fs.Bool("empty", false, "plant no facility (a scene for false-alarm checks)")
	dataset := fs.Int("dataset", 0, "write N training locations in METER-ML's layout instead of one scene")
	var plants plantFlags
	fs.Var(&plants, "plant", "plant a facility, CLASS@LON,LAT (repeatable; default one of each class around the centre)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("fixtures: --out is required")
	}
	if *dataset > 0 {
		n, err := fixtures.WriteDataset(ctx, *out, fixtures.DatasetOptions{N: *dataset, Seed: *seed})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d locations in METER-ML's layout to %s (labels: %s)\n", n, *out, filepath.Join(*out, "dataset.geojson"))
		return nil
	}
	c, err := parseLonLat(*center)
	if err != nil {
		return usagef("fixtures: --center: %v", err)
	}
	opts := fixtures.Options{ID: *id, Center: c, SizeKM: *size, Seed: *seed, NoCloud: *noCloud, S2Baseline: *baseline, S1Units: *s1Units}
	switch {
	case *empty && len(plants) > 0:
		return usagef("fixtures: --empty and --plant exclude each other")
	case *empty:
		opts.Plants = []fixtures.Plant{}
	case len(plants) > 0:
		opts.Plants = plants
	}
	res, err := fixtures.Write(*out, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote scene %s (%g km, EPSG:%d, NAIP EPSG:%d) to %s\n  scene: %s\n  truth: %s\n",
		res.Scene.ID, *size, res.EPSG, res.NAIPEPSG, res.Dir, res.SceneFile, res.TruthFile)
	return nil
}
