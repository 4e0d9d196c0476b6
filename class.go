package methanemap

import "fmt"

// Class is one of the six methane-emitting facility types of METER-ML.
type Class string

// The six classes, in the order of the design.
const (
	CAFO                Class = "cafo"
	CoalMine            Class = "coal_mine"
	Landfill            Class = "landfill"
	ProcessingPlant     Class = "natural_gas_processing_plant"
	RefineryTerminal    Class = "oil_refinery_petroleum_terminal"
	WastewaterTreatment Class = "wastewater_treatment_plant"
)

// Classes lists the six classes in the design's order.
var Classes = [NumClasses]Class{CAFO, CoalMine, Landfill, ProcessingPlant, RefineryTerminal, WastewaterTreatment}

// Index is the class's position in Classes (and in Scores), or -1 for a
// string that is not one of the six.
func (c Class) Index() int {
	for i, k := range Classes {
		if k == c {
			return i
		}
	}
	return -1
}

// ParseClass returns the class named s, or an error listing the valid ids.
func ParseClass(s string) (Class, error) {
	for _, c := range Classes {
		if string(c) == s {
			return c, nil
		}
	}
	return "", fmt.Errorf("unknown class %q (want one of %v)", s, Classes)
}
