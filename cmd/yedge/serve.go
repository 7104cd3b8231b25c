package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/plan"
	"github.com/yedge/yedge/serve"
)

func newServeCmd(g *globalFlags) *cobra.Command {
	var cfgPath string
	var watchConfig bool
	c := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "Run the daemon: streams, int8 with an FP32 shadow, metrics and HTTP",
		Long: `Run yedge as a daemon. The config is --config FILE, else /etc/yedge/yedge.yaml,
else ./configs/yedge.yaml. The global flags given on the command line
(--provider, --threads, --device-id, --trt-*, --ort-lib, --log-*) override the
file. HTTP: /healthz, /readyz, /status, /metrics, POST /eval, POST /models (push an
int8 model: it runs as a canary against FP32 before it serves), POST
/models/rollback.

With model.quantize, FP32 serves at once while the int8 model is quantized in
the background (at a lower priority), then runs as a canary and is swapped in
between two frames when it passes. See README "Model lifecycle".

Signals: SIGTERM/SIGINT stop readers, finish frames in flight, flush sinks and
exit 0; SIGHUP reloads the config as a diff: the new plan (config, models
opened and checked as YOLOv5, sinks) is built beside the running one and
swapped in only when all of it succeeded; otherwise the daemon keeps running
exactly as it was, and the refusal shows in the log, in /status and in
yedge_reload_total{result="rejected"}. Under systemd (Type=notify) it sends
READY=1 once a model serves and WATCHDOG=1 from its processing
loop.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runServe(c.Context(), g.overrides(c.Flags().Changed), cfgPath, watchConfig, c.ErrOrStderr())
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (YAML)")
	c.Flags().BoolVar(&watchConfig, "watch-config", false, "reload when the config file changes, as on SIGHUP (ConfigMap updates)")
	return c
}

// loadPlan builds the plan of a configuration file and the overrides for
// a reload. A plan that quantizes at start-up keeps its int8 model empty:
// the running daemon keeps the int8 model it prepared and promoted.
func loadPlan(path string, o plan.Overrides) (*plan.Daemon, error) {
	d, err := plan.Load(path, o)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	if _, err := initLibrary(d.Library, d.LibraryConfig); err != nil {
		return nil, err
	}
	return d, nil
}

func runServe(ctx context.Context, o plan.Overrides, cfgPath string, watchConfig bool, stderr io.Writer) error {
	d, err := plan.Load(cfgPath, o)
	if err != nil {
		return withCode(exitUsage, err)
	}
	// The level is a LevelVar: a reload applies a new log_level.
	level := new(slog.LevelVar)
	level.Set(d.Serve.Process.LogLevel)
	log, err := leveledLogger(level, d.Serve.Process.LogFormat, stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	lib, err := initLibrary(d.Library, d.LibraryConfig)
	if err != nil {
		return err
	}
	log.Debug("onnxruntime loaded", "library", lib.Path, "from", lib.Origin, "version", onnxrt.Version())
	// Quantization at start-up runs in the background while FP32 serves.
	prepare := d.Background(log)
	p := d.Serve
	log.Info("starting", "config", d.ConfigPath, "device", p.Device.ID, "provider", p.Runtime.Provider, "threads", p.Runtime.Threads,
		"fp32", p.Models.FP32.Path, "int8", p.Models.Int8.Path, "quantize_in_background", prepare != nil,
		"state_dir", p.Lifecycle.StateDir, "tensorrt_cache", p.Runtime.TensorRT.CacheDir)
	notify := func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Debug("sd_notify", "err", err)
		}
	}
	var watchdog time.Duration
	if d, err := daemon.SdWatchdogEnabled(false); err == nil && d > 0 {
		watchdog = d / 2
	}
	version, rev := buildVersion()
	srv, err := serve.New(ctx, p, serve.Options{Logger: log, Version: version, Revision: rev, Notify: notify, WatchdogEvery: watchdog,
		Prepare: prepare, LogLevel: level})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return modelCode(err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if watchConfig {
		go watchConfigFile(ctx, d.ConfigPath, log, hup)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			notify("RELOADING=1")
			if next, err := loadPlan(d.ConfigPath, o); err != nil {
				srv.ReloadFailed(err)
			} else {
				_, _ = srv.Reload(ctx, next.Serve) // logged, counted and shown by serve
			}
			notify("READY=1")
		}
	}
}
