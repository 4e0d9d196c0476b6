package methanemap

import (
	"time"

	"github.com/paulmach/orb"
)

// Detection is one chip scored above its class's threshold.
type Detection struct {
	// ID is "<scene_id>/<chip_id>/<class>": re-running a scene gives the
	// same ids.
	ID            string
	Class         Class
	Score         float64 // the class's score
	Scores        Scores  // all six
	SceneID       string
	ChipID        ChipID
	Acquired      time.Time
	Model         string // name@version
	Sensors       []Sensor
	ValidFraction float64
	CloudFraction float64
	DetectedAt    time.Time
	Footprint     orb.Polygon // WGS84, counter-clockwise exterior ring
}

// DetectionID builds a detection's id.
func DetectionID(sceneID string, chip ChipID, c Class) string {
	return sceneID + "/" + chip.String() + "/" + string(c)
}

// Site merges the positive chips of one class that overlap or touch: one
// facility seen by several chips is one site.
type Site struct {
	ID       string // "<class>/<first member chip id>"
	Class    Class
	Center   orb.Point // score-weighted centre of the member chips, WGS84
	Bound    orb.Bound // of the member chips' footprints
	Chips    []string  // member detection chip ids, sorted
	Scenes   []string  // scene ids, sorted
	MaxScore float64
}
