package methanemap

// NumClasses is the number of facility classes.
const NumClasses = 6

// Scores holds one probability in [0, 1] per class, in the order of Classes.
type Scores [NumClasses]float64

// Of returns the score of class c (0 for an unknown class).
func (s Scores) Of(c Class) float64 {
	if i := c.Index(); i >= 0 {
		return s[i]
	}
	return 0
}

// Map returns the scores keyed by class id, as detections carry them.
func (s Scores) Map() map[Class]float64 {
	m := make(map[Class]float64, NumClasses)
	for i, c := range Classes {
		m[c] = s[i]
	}
	return m
}
