// Package sinks writes per-frame detection records out of the yedge daemon.
//
// Every sink receives one [Record] per processed frame and writes it as one
// JSON line (JSON Lines / NDJSON). The available sinks are:
//
//   - [JSONL]: an asynchronous, size-rotated JSON Lines file whose Write never
//     waits for the disk (records are queued to one writer goroutine and are
//     dropped, and counted, when the queue is full);
//   - [Writer]: a synchronous sink over any [io.Writer], typically os.Stdout;
//   - [Multi]: a fan-out over several sinks.
//
// All sinks are safe for concurrent use. A sink never retains the *Record
// passed to Write: the record is encoded before Write returns, so the caller
// may reuse it (and its slices and map) immediately.
package sinks
