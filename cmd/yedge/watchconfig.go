package main

import (
	"context"
	"log/slog"
	"os"
	"syscall"

	"github.com/yedge/yedge/internal/watch"
)

// watchConfigFile (serve --watch-config) queues a SIGHUP-equivalent reload
// for Kubernetes ConfigMap volumes, where nobody sends a signal (see
// deploy/kubernetes): a reload on hup each time the
// content of path changes, until ctx is done. A reload already queued
// covers the change (it reads the file when it runs).
func watchConfigFile(ctx context.Context, path string, log *slog.Logger, hup chan<- os.Signal) {
	log.Info("watching the config file for changes", "path", path)
	err := watch.WatchWith(ctx, path, watch.Options{OnError: func(err error) { log.Warn("watch-config", "err", err) }}, func() {
		log.Info("config file changed; reloading", "path", path)
		select {
		case hup <- syscall.SIGHUP:
		default:
		}
	})
	if ctx.Err() == nil {
		log.Error("watch-config stopped: reload with SIGHUP", "err", err)
	}
}
