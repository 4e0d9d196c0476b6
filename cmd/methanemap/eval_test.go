package main

import (
	"math"
	"testing"
)

func TestAUPRC(t *testing.T) {
	chip := func(score float64, pos, amb bool) labelled {
		var l labelled
		l.scores[0], l.truth[0], l.ambiguous[0] = score, pos, amb
		return l
	}
	chips := []labelled{chip(0.9, true, false), chip(0.8, false, true), chip(0.7, true, false), chip(0.1, false, false)}
	ap, pos := auprc(chips, 0, false)
	if pos != 2 || math.Abs(ap-(1+2.0/3)/2) > 1e-12 {
		t.Errorf("AUPRC %v over %d positives, want %v over 2", ap, pos, (1+2.0/3)/2)
	}
	if ap, _ := auprc(chips, 0, true); ap != 1 {
		t.Errorf("without the ambiguous chip AUPRC %v, want 1", ap)
	}
	if ap, pos := auprc(chips, 1, false); ap != 0 || pos != 0 {
		t.Errorf("a class without positives: %v, %d", ap, pos)
	}
}
