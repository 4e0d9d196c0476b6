// Package worker takes scene jobs from NATS JetStream and runs them: one
// durable pull consumer ("workers") on a work-queue stream shared by every
// worker process, a bounded number of scenes in flight, and the design's
// ack policy — success is acked; a permanent failure is terminated with
// its reason and a dead letter; a transient one is naked with back-off,
// bounded by MaxDeliver, then dead-lettered. A scene whose deliveries
// never end (it kills or stalls the workers that run it) is dead-lettered
// on its delivery after MaxDeliver, without running it. Long scenes send
// in-progress acks. Detections are published with Nats-Msg-Id set to
// their stable ids, sites with SiteMsgID, so a redelivered scene adds no
// duplicates. Status events go to <prefix>.events.<scene_id>. Done scenes
// are remembered in SceneStateBucket for MaxAge: Enqueue does not queue
// them again, EnqueueScene with Force does, as a new run.
package worker
