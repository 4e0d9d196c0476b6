package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/configs"
	"github.com/methanemap/methanemap/ingest"
	"github.com/methanemap/methanemap/internal/fixtures"
	"github.com/methanemap/methanemap/model"
	"github.com/methanemap/methanemap/pipeline"
	"github.com/methanemap/methanemap/tiles"
	"github.com/paulmach/orb"
)

// heldOutCentres are scene centres the training set (fixtures.WriteDataset)
// never draws around.
var heldOutCentres = []orb.Point{{-96.45, 43.49}, {-90.33, 30.01}, {-81.02, 39.89}, {-105.20, 39.95}, {-100.11, 35.39}, {-121.46, 38.45}}

func runEval(ctx context.Context, cfg configs.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	var scenes stringList
	fs.Var(&scenes, "scene", "fixture scene.json with truth.geojson beside it (repeatable)")
	heldOut := fs.Int("held-out", 0, "write N held-out fixture scenes and evaluate on them")
	modelDir := fs.String("model", cfg.Model.Dir, "model directory (default: the built-in demo model)")
	backend := fs.String("backend", cfg.Model.Backend, "auto, onnxruntime or onnxgo")
	batch := fs.Int("batch", cfg.Model.BatchSize, "chips per inference call")
	topFP := fs.Int("false-positives", 0, "list the N highest-scoring chips of each class that hold no facility of it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := ingest.Confine(nil); err != nil { // a local user's files: GDAL's HTTP goes out as it is
		return err
	}
	if len(scenes) == 0 && *heldOut == 0 {
		return usagef("eval: give --scene FILE or --held-out N")
	}
	scorer, err := newScorer(cfg, *modelDir, *backend, *batch, newLogger(cfg.Log, stderr))
	if err != nil {
		return err
	}
	defer scorer.Close()
	m := scorer.Model
	if *heldOut > 0 {
		dir, err := os.MkdirTemp("", "methanemap-eval-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		for i := range *heldOut {
			c := heldOutCentres[i%len(heldOutCentres)]
			res, err := fixtures.Write(filepath.Join(dir, fmt.Sprint(i)), fixtures.Options{
				Center: c, SizeKM: 5, Seed: 9000 + uint64(i), ID: fmt.Sprintf("heldout_%d", i),
				Plants: fixtures.DefaultPlants(orb.Point{c[0] + float64(i)*0.001, c[1]}, 5)})
			if err != nil {
				return err
			}
			scenes = append(scenes, res.SceneFile)
		}
	}
	var all []labelled
	for _, f := range scenes {
		got, err := evalScene(ctx, f, m, scorer, stdout)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, got...)
	}
	fmt.Fprintf(stdout, "\n%s on %d chips of %d scene(s), backend %s\n", m.Card.ID(), len(all), len(scenes), scorer.Backend())
	fmt.Fprintf(stdout, "AUPRC: all chips (positive: holds the facility's centre), and without the chips that hold\nonly part of a facility of that class (neither clearly positive nor negative)\n")
	fmt.Fprintf(stdout, "%-34s %9s %9s %10s %9s\n", "class", "positives", "AUPRC", "ambiguous", "AUPRC")
	for i, c := range mm.Classes {
		ap, pos := auprc(all, i, false)
		apx, _ := auprc(all, i, true)
		amb := 0
		for _, l := range all {
			if l.ambiguous[i] {
				amb++
			}
		}
		fmt.Fprintf(stdout, "%-34s %9d %9.3f %10d %9.3f\n", c, pos, ap, amb, apx)
	}
	for i, c := range mm.Classes {
		printFalsePositives(stdout, all, i, c, *topFP)
	}
	return nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// labelled is one chip's scores and truth. A chip that holds part of a
// facility of a class but not its centre is ambiguous for that class.
type labelled struct {
	where     string // scene id and chip id
	cloud     float64
	scores    mm.Scores
	truth     [mm.NumClasses]bool
	ambiguous [mm.NumClasses]bool
}

// evalScene scores every chip of a fixture scene and labels each with the
// classes whose planted centre it holds.
func evalScene(ctx context.Context, sceneFile string, m *model.Model, scorer *model.Scorer, w io.Writer) ([]labelled, error) {
	scs, err := loadScenes(sceneFile)
	if err != nil {
		return nil, err
	}
	sc := scs[0]
	truth, err := fixtures.ReadTruth(filepath.Join(filepath.Dir(sceneFile), "truth.geojson"))
	if err != nil {
		return nil, err
	}
	src, grid, err := pipeline.OpenGrid(ctx, sc, m.Card, pipeline.Options{})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	cutter, err := tiles.NewCutter(src, grid, m.Card.Chip, tiles.CutOptions{})
	if err != nil {
		return nil, err
	}
	defer cutter.Close()
	var chips []mm.Chip
	if _, err := cutter.Each(ctx, func(c mm.Chip) error { chips = append(chips, c); return nil }); err != nil {
		return nil, err
	}
	scores, err := scorer.Score(ctx, chips)
	if err != nil {
		return nil, err
	}
	toGrid, err := ingest.NewTransformer(4326, grid.EPSG)
	if err != nil {
		return nil, err
	}
	defer toGrid.Close()
	out := make([]labelled, len(chips))
	for i := range chips {
		out[i].scores = scores[i]
		out[i].where = sc.ID + " " + chips[i].ID.String()
		out[i].cloud = chips[i].CloudFraction
	}
	for _, tp := range truth {
		xy, err := toGrid.Point(tp.LonLat)
		if err != nil {
			return nil, err
		}
		k := tp.Class.Index()
		for i, c := range chips {
			b := c.ID.Bounds()
			switch {
			case xy[0] >= b[0] && xy[0] < b[2] && xy[1] >= b[1] && xy[1] < b[3]:
				out[i].truth[k] = true
				fmt.Fprintf(w, "%s %-32s at %9.5f,%8.5f chip %-22s score %.3f\n", sc.ID, tp.Class, tp.LonLat[0], tp.LonLat[1], c.ID, scores[i][k])
			case math.Hypot(math.Max(b[0]-xy[0], math.Max(0, xy[0]-b[2])), math.Max(b[1]-xy[1], math.Max(0, xy[1]-b[3]))) < tp.RadiusM:
				out[i].ambiguous[k] = true
			}
		}
	}
	return out, nil
}

// auprc is the average precision of class k over the chips: the mean of
// the precision at each positive, ranking by score; skipAmbiguous leaves
// out chips ambiguous for the class.
func auprc(chips []labelled, k int, skipAmbiguous bool) (float64, int) {
	var idx []int
	for i := range chips {
		if !(skipAmbiguous && chips[i].ambiguous[k]) {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return chips[idx[a]].scores[k] > chips[idx[b]].scores[k] })
	tp, sum := 0, 0.0
	for rank, i := range idx {
		if chips[i].truth[k] {
			tp++
			sum += float64(tp) / float64(rank+1)
		}
	}
	if tp == 0 {
		return 0, 0
	}
	return sum / float64(tp), tp
}

// printFalsePositives lists the n highest-scoring chips of class k that
// hold no facility of it.
func printFalsePositives(w io.Writer, chips []labelled, k int, c mm.Class, n int) {
	var neg []labelled
	for _, l := range chips {
		if !l.truth[k] && !l.ambiguous[k] {
			neg = append(neg, l)
		}
	}
	sort.SliceStable(neg, func(a, b int) bool { return neg[a].scores[k] > neg[b].scores[k] })
	for _, l := range neg[:min(n, len(neg))] {
		fmt.Fprintf(w, "false positive %-32s %.3f at %s (cloud %.2f)\n", c, l.scores[k], l.where, l.cloud)
	}
}
