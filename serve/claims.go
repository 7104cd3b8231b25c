package serve

import (
	"reflect"
	"slices"
	"strings"
)

// effect is what a reload does about one changed plan field.
type effect int

const (
	// ignored: not a setting (the logger handed down with the options).
	ignored effect = iota
	// perStream: the streams' own diff (added, removed, restarted).
	perStream
	// reloadModels: both models are loaded again (Change.Models).
	reloadModels
	// canaryInt8: the new int8 model runs as a canary (Change.Int8).
	canaryInt8
	// reopenSinks: the sinks are opened again (Change.Sinks).
	reopenSinks
	// applySetting: applies to the next frame or request (Change.Settings).
	applySetting
	// atRestart: only a restart applies it; listed in pending_restart
	// under its configuration key (Change.Restart).
	atRestart
)

// claim is one plan field, the owner that applies it, and what a change
// of it does on reload.
type claim struct {
	// field is the dotted path of the field in Plan ("HTTP.ReadTimeout").
	field string
	// owner is the part of the daemon that applies it.
	owner  string
	effect effect
	// key is the configuration key of an atRestart field.
	key string
}

// claims are the plan's fields, each claimed by its owner: the streams,
// the models (the runtime options, model files and post-processing), the
// model lifecycle (the int8 model, canary, guard, store), the sinks, the
// shadow, evaluation, the HTTP server, the web view, the server itself
// and the process around it. A field of Plan missing here fails
// TestEveryPlanFieldClaimed, so a new field cannot make a reload silently
// "unchanged". The atRestart claims are in the order of pending_restart.
var claims = []claim{
	{field: "Streams", owner: "streams", effect: perStream},

	{field: "Runtime.Provider", owner: "models", effect: reloadModels},
	{field: "Runtime.DeviceID", owner: "models", effect: reloadModels},
	{field: "Runtime.Threads", owner: "models", effect: reloadModels},
	{field: "Runtime.TensorRT", owner: "models", effect: reloadModels},
	{field: "Runtime.OptimizedModelPath", owner: "models", effect: reloadModels},
	{field: "Runtime.DisableOptimizations", owner: "models", effect: reloadModels},
	{field: "Runtime.NoSpin", owner: "models", effect: reloadModels},
	{field: "Runtime.NoMemPattern", owner: "models", effect: reloadModels},
	{field: "Runtime.Quiet", owner: "models", effect: reloadModels},
	{field: "Runtime.Logger", owner: "models", effect: ignored},
	{field: "Models.FP32", owner: "models", effect: reloadModels},
	{field: "Models.Height", owner: "models", effect: reloadModels},
	{field: "Models.Width", owner: "models", effect: reloadModels},
	{field: "Models.Batch", owner: "models", effect: reloadModels},
	{field: "Models.Names", owner: "models", effect: reloadModels},
	{field: "Models.FullGraph", owner: "models", effect: reloadModels},
	{field: "Models.Interp", owner: "models", effect: reloadModels},
	{field: "Post", owner: "models", effect: reloadModels},

	{field: "Models.Int8", owner: "lifecycle", effect: canaryInt8},
	{field: "Lifecycle.Canary", owner: "lifecycle", effect: applySetting},
	{field: "Lifecycle.Guard", owner: "lifecycle", effect: applySetting},

	{field: "Sinks", owner: "sinks", effect: reopenSinks},
	{field: "Shadow", owner: "shadow", effect: applySetting},
	{field: "Eval", owner: "eval", effect: applySetting},

	{field: "HTTP.MaxBodyBytes", owner: "http", effect: applySetting},
	{field: "HTTP.MaxModelBytes", owner: "http", effect: applySetting},
	{field: "HTTP.EnablePost", owner: "http", effect: applySetting},
	{field: "HTTP.Token", owner: "http", effect: applySetting},
	{field: "HTTP.UI", owner: "view", effect: applySetting},
	{field: "ShutdownTimeout", owner: "server", effect: applySetting},
	{field: "Device", owner: "server", effect: applySetting},
	{field: "Process.LogLevel", owner: "process", effect: applySetting},

	// The listener and HTTP server are made once.
	{field: "Listen", owner: "http", effect: atRestart, key: "listen"},
	// ReadHeaderTimeout and IdleTimeout follow from read_timeout.
	{field: "HTTP.ReadTimeout", owner: "http", effect: atRestart, key: "http.read_timeout"},
	{field: "HTTP.ReadHeaderTimeout", owner: "http", effect: atRestart, key: "http.read_timeout"},
	{field: "HTTP.IdleTimeout", owner: "http", effect: atRestart, key: "http.read_timeout"},
	{field: "HTTP.WriteTimeout", owner: "http", effect: atRestart, key: "http.write_timeout"},
	// The model store is opened once.
	{field: "Lifecycle.StateDir", owner: "lifecycle", effect: atRestart, key: "state_dir"},
	{field: "Lifecycle.Keep", owner: "lifecycle", effect: atRestart, key: "store.keep"},
	{field: "Lifecycle.MaxBytes", owner: "lifecycle", effect: atRestart, key: "store.max_size_mb"},
	// The process's logger and onnxruntime library are made once, and
	// quantization runs at start-up.
	{field: "Process.LogFormat", owner: "process", effect: atRestart, key: "log_format"},
	{field: "Process.Library", owner: "process", effect: atRestart, key: "onnxruntime.library"},
	{field: "Process.Quantize", owner: "process", effect: atRestart, key: "model.quantize"},
}

// Diff decides what a reload from p to next changes: each claimed field
// that differs sets its effect; streams are matched by name.
func (p Plan) Diff(next Plan) Change {
	var c Change
	c.Added, c.Removed, c.Restarted = diffStreams(p.Streams, next.Streams)
	a, b := reflect.ValueOf(p), reflect.ValueOf(next)
	for _, cl := range claims {
		if same(fieldAt(a, cl.field), fieldAt(b, cl.field)) {
			continue
		}
		switch cl.effect {
		case reloadModels:
			c.Models = true
		case canaryInt8:
			c.Int8 = true
		case reopenSinks:
			c.Sinks = true
		case applySetting:
			c.Settings = true
		case atRestart:
			c.Restart = true
		}
	}
	return c
}

// RestartKeys lists, by their configuration keys, the settings that differ
// between p and next and that only a restart applies (the atRestart
// claims: the listen address, the HTTP server's timeouts, state_dir and
// the store's limits, the log format, the onnxruntime library,
// model.quantize). A reload keeps the running values of these; /status
// lists them under pending_restart, compared with the values the daemon
// started with, so that reverting a change empties the list.
func RestartKeys(p, next Plan) []string {
	var keys []string
	a, b := reflect.ValueOf(p), reflect.ValueOf(next)
	for _, cl := range claims {
		if cl.effect == atRestart && !same(fieldAt(a, cl.field), fieldAt(b, cl.field)) && !slices.Contains(keys, cl.key) {
			keys = append(keys, cl.key)
		}
	}
	return keys
}

// diffStreams matches streams by name: those only in next, only in cur
// (sorted), and in both but different.
func diffStreams(cur, next []StreamPlan) (added, removed, restarted []string) {
	old := map[string]StreamPlan{}
	for _, s := range cur {
		old[s.Name] = s
	}
	for _, s := range next {
		o, ok := old[s.Name]
		switch {
		case !ok:
			added = append(added, s.Name)
		case !reflect.DeepEqual(o, s):
			restarted = append(restarted, s.Name)
		}
		delete(old, s.Name)
	}
	for name := range old {
		removed = append(removed, name)
	}
	slices.Sort(removed)
	return added, removed, restarted
}

// fieldAt is the field of v (a struct) at a dotted path.
func fieldAt(v reflect.Value, path string) reflect.Value {
	for name := range strings.SplitSeq(path, ".") {
		v = v.FieldByName(name)
	}
	return v
}

// same reports whether two values of a field are equal; an empty slice
// or map equals a nil one.
func same(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice, reflect.Map:
		if a.Len() == 0 && b.Len() == 0 {
			return true
		}
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}
