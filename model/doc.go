// Package model reads model cards (model.yaml beside an ONNX file) and will
// hold the Backend interface with its ONNX Runtime and onnx-go backends.
//
// The card says how chips are cut for the model (footprint, grid size,
// ordered bands with their normalisation), which ONNX file to run, and how
// its outputs map to the six classes. Only this package touches ONNX.
package model
