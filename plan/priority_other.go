//go:build !linux

package plan

import "log/slog"

// lowPriority runs f (the priority is lowered on Linux only).
func lowPriority(_ *slog.Logger, f func()) { f() }
