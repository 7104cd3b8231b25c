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

	"github.com/yedge/yedge/plan"
	yrt "github.com/yedge/yedge/runtime"
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
file. HTTP: /healthz, /readyz, /status, /metrics, POST /eval.

Signals: SIGTERM/SIGINT stop readers, finish frames in flight, flush sinks and
exit 0; SIGHUP reloads the config as a diff: the new plan (config, models
opened and checked as YOLOv5, sinks) is built beside the running one and
swapped in only when all of it succeeded; otherwise the daemon keeps running
exactly as it was, and the refusal shows in the log, in /status and in
yedge_reload_total{result="rejected"}. Under systemd (Type=notify) it sends
READY=1 once models and engines are ready and WATCHDOG=1 from its processing
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

// loadPlan builds the plan of a configuration file and the overrides,
// preparing it (onnxruntime, start-up quantization).
func loadPlan(ctx context.Context, path string, o plan.Overrides, log *slog.Logger) (*plan.Daemon, error) {
	d, err := plan.Load(path, o)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	if _, err := initLibrary(d.Library, d.LibraryConfig); err != nil {
		return nil, err
	}
	if err := d.Prepare(ctx, log); err != nil {
		return nil, modelCode(err)
	}
	return d, nil
}

func runServe(ctx context.Context, o plan.Overrides, cfgPath string, watchConfig bool, stderr io.Writer) error {
	d, err := plan.Load(cfgPath, o)
	if err != nil {
		return withCode(exitUsage, err)
	}
	log, err := newLogger(d.LogLevel, d.LogFormat, stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	lib, err := initLibrary(d.Library, d.LibraryConfig)
	if err != nil {
		return err
	}
	log.Debug("onnxruntime loaded", "library", lib.Path, "from", lib.Origin, "version", yrt.Version())
	if err := d.Prepare(ctx, log); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return modelCode(err)
	}
	p := d.Serve
	log.Info("starting", "config", d.ConfigPath, "device", p.Device.ID, "provider", p.Runtime.Provider, "threads", p.Runtime.Threads,
		"fp32", p.Models.FP32.Path, "int8", p.Models.Int8.Path, "tensorrt_cache", p.Runtime.TensorRT.CacheDir)
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
	srv, err := serve.New(ctx, p, serve.Options{Logger: log, Version: version, Revision: rev, Notify: notify, WatchdogEvery: watchdog})
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
			if next, err := loadPlan(ctx, d.ConfigPath, o, log); err != nil {
				srv.ReloadFailed(err)
			} else {
				_, _ = srv.Reload(ctx, next.Serve) // logged, counted and shown by serve
			}
			notify("READY=1")
		}
	}
}
