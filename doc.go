// Package methanemap holds the value types every stage of methanemap shares:
// scenes and their assets, sensors and band names, the six facility classes,
// chip ids and chips, the chip specification a model card describes, and the
// permanent-error marker the worker's ack policy depends on.
//
// It imports only the standard library and orb, so that ingest, tiles, model,
// publisher and worker can talk to each other without seeing each other's
// dependencies (GDAL, ONNX, NATS).
//
// Data flows one way:
//
//	scene message ─► worker ─► ingest ─► tiles ─► model ─► publisher
package methanemap
