package methanemap

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/paulmach/orb"
)

// ChipID names one cell of the chip grid: a square of Footprint metres in the
// projected CRS EPSG whose lower-left corner is (Col·Stride, Row·Stride).
// The grid is aligned to the CRS origin, so the same ground has the same id in
// every scene. Its text form is "EPSG:FOOTPRINT:COL:ROW" (for example
// "32614:720:1234:5678"), or "EPSG:FOOTPRINT/STRIDE:COL:ROW" when the stride
// differs from the footprint.
type ChipID struct {
	EPSG      int
	Footprint int // metres
	Stride    int // metres; 0 means Footprint
	Col, Row  int
}

func (c ChipID) stride() int {
	if c.Stride == 0 {
		return c.Footprint
	}
	return c.Stride
}

// String returns the id's text form.
func (c ChipID) String() string {
	size := strconv.Itoa(c.Footprint)
	if s := c.stride(); s != c.Footprint {
		size += "/" + strconv.Itoa(s)
	}
	return fmt.Sprintf("%d:%s:%d:%d", c.EPSG, size, c.Col, c.Row)
}

// Bounds returns the chip's [minX, minY, maxX, maxY] in its CRS, metres.
func (c ChipID) Bounds() [4]float64 {
	s := float64(c.stride())
	x0, y0 := float64(c.Col)*s, float64(c.Row)*s
	f := float64(c.Footprint)
	return [4]float64{x0, y0, x0 + f, y0 + f}
}

// FileName is the id with characters unsafe in file names replaced:
// "32614_720_1234_5678".
func (c ChipID) FileName() string {
	return strings.NewReplacer(":", "_", "/", "s").Replace(c.String())
}

// ParseChipID reads the text form written by String.
func ParseChipID(s string) (ChipID, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return ChipID{}, fmt.Errorf("chip id %q: want EPSG:FOOTPRINT:COL:ROW", s)
	}
	var c ChipID
	var err error
	size, stride, hasStride := strings.Cut(parts[1], "/")
	if c.EPSG, err = strconv.Atoi(parts[0]); err != nil || c.EPSG <= 0 {
		return ChipID{}, fmt.Errorf("chip id %q: bad EPSG code", s)
	}
	if c.Footprint, err = strconv.Atoi(size); err != nil || c.Footprint <= 0 {
		return ChipID{}, fmt.Errorf("chip id %q: bad footprint", s)
	}
	c.Stride = c.Footprint
	if hasStride {
		if c.Stride, err = strconv.Atoi(stride); err != nil || c.Stride <= 0 {
			return ChipID{}, fmt.Errorf("chip id %q: bad stride", s)
		}
	}
	if c.Col, err = strconv.Atoi(parts[2]); err != nil {
		return ChipID{}, fmt.Errorf("chip id %q: bad column", s)
	}
	if c.Row, err = strconv.Atoi(parts[3]); err != nil {
		return ChipID{}, fmt.Errorf("chip id %q: bad row", s)
	}
	return c, nil
}

// BandSpec is one band of a model input, as the model card gives it. A raw
// value v becomes ((v·Scale + Offset) − Mean) / Std; nodata becomes Fill.
type BandSpec struct {
	Sensor Sensor  `yaml:"sensor" json:"sensor"`
	Band   string  `yaml:"band" json:"band"`
	Scale  float64 `yaml:"scale" json:"scale"`
	Offset float64 `yaml:"offset" json:"offset"`
	Mean   float64 `yaml:"mean" json:"mean"`
	Std    float64 `yaml:"std" json:"std"`
	Fill   float64 `yaml:"fill" json:"fill"`
}

// Name is the band's description in exported chips: "<sensor>:<band>".
func (b BandSpec) Name() string { return string(b.Sensor) + ":" + b.Band }

// Normalize maps a raw value to the model's input scale: ((v * scale +
// offset) - mean) / std, the division made as a multiplication by 1/std
// (what the chip cutter computes, with 1/std worked out once per band).
func (b BandSpec) Normalize(v float64) float64 {
	return (v*b.Scale + b.Offset - b.Mean) * (1 / b.Std)
}

// InputSpec is one model input: a Size×Size grid of the listed bands, stacked
// in order (channels first).
type InputSpec struct {
	Name  string     `yaml:"name" json:"name"`
	Size  int        `yaml:"size" json:"size"`
	Bands []BandSpec `yaml:"bands" json:"bands"`
}

// ChipSpec is the part of a model card that says how chips are cut.
type ChipSpec struct {
	FootprintM int         `yaml:"footprint_m" json:"footprint_m"` // chip side in metres (METER-ML: 720)
	StrideM    int         `yaml:"stride_m" json:"stride_m"`       // default scan stride in metres
	Inputs     []InputSpec `yaml:"inputs" json:"inputs"`
}

// Sensors returns the sensors the spec's inputs read, in canonical order.
func (s ChipSpec) Sensors() []Sensor {
	used := map[Sensor]bool{}
	for _, in := range s.Inputs {
		for _, b := range in.Bands {
			used[b.Sensor] = true
		}
	}
	var out []Sensor
	for _, sn := range Sensors {
		if used[sn] {
			out = append(out, sn)
		}
	}
	return out
}

// Tensor is one model input of one chip: Bands×Size×Size float32 values,
// channels first, already normalised. Raw, when kept, holds the warped values
// before normalisation with NaN for nodata.
type Tensor struct {
	Name  string
	Size  int
	Bands []string // "<sensor>:<band>"
	Data  []float32
	Raw   []float32
}

// Chip is one cell of the chip grid with every sensor warped onto it.
type Chip struct {
	ID            ChipID
	SceneID       string
	Footprint     orb.Polygon // WGS84 lon/lat, counter-clockwise exterior ring
	Inputs        []Tensor
	Sensors       []Sensor
	ValidFraction float64 // share of pixels with data in every sensor
	CloudFraction float64 // share of pixels Sentinel-2 SCL calls cloud, shadow or cirrus
}
