// Package models embeds the default model shipped in the binary, so that
// commands work from any directory without --model.
package models

import "embed"

// Demo holds models/demo: the demo model card (and, with the trained model,
// its ONNX file).
//
//go:embed demo
var Demo embed.FS

// DemoDir is the directory of the demo model inside Demo.
const DemoDir = "demo"
