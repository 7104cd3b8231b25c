package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/yedge/yedge/configs"
	"github.com/yedge/yedge/serve"
)

func newServeCmd(g *globalFlags) *cobra.Command {
	var cfgPath string
	c := &cobra.Command{
		Use:   "serve [--config FILE]",
		Short: "Run the daemon: streams, int8 with an FP32 shadow, metrics and HTTP",
		Long: `Run yedge as a daemon. The config is --config FILE, else /etc/yedge/yedge.yaml,
else ./configs/yedge.yaml. HTTP: /healthz, /readyz, /status, /metrics, POST /eval.

Signals: SIGTERM/SIGINT stop readers, finish frames in flight, flush sinks and
exit 0; SIGHUP reloads the config (streams are added/removed without reloading
the models when only streams changed). Under systemd (Type=notify) it sends
READY=1 once models and engines are ready and WATCHDOG=1 from its processing
loop.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runServe(c.Context(), g, cfgPath, c.Flags().Changed, c.ErrOrStderr())
		},
	}
	c.Flags().StringVarP(&cfgPath, "config", "c", "", "config file (YAML)")
	c.Flags().BoolVar(&watchConfig, "watch-config", false, "reload when the config file changes, as on SIGHUP (ConfigMap updates)")
	return c
}

func loadConfig(path string) (*configs.Config, error) {
	p, err := configs.Search(path)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	cfg, err := configs.Load(p)
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	return cfg, nil
}

func runServe(ctx context.Context, g *globalFlags, cfgPath string, flagChanged func(string) bool, stderr io.Writer) error {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	gl := *g
	if cfg.LogLevel != "" && !flagChanged("log-level") {
		gl.logLevel = cfg.LogLevel
	}
	if cfg.LogFormat != "" && !flagChanged("log-format") {
		gl.logFormat = cfg.LogFormat
	}
	log, err := gl.logger(stderr)
	if err != nil {
		return withCode(exitUsage, err)
	}
	if g.ortLib != "" {
		cfg.ONNXRuntime.Library = g.ortLib
	}
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if watchConfig {
		go watchConfigFile(ctx, cfg.Path, log, hup)
	}
	for {
		srv, err := serve.New(ctx, cfg, serve.Options{Logger: log, Version: version, Revision: rev, Notify: notify, WatchdogEvery: watchdog})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return modelCode(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- srv.Run(runCtx) }()
		restart := false
	wait:
		for {
			select {
			case err := <-done:
				stop()
				if err != nil {
					return err
				}
				if !restart {
					return nil
				}
				break wait
			case <-hup:
				notify("RELOADING=1")
				next, err := loadConfig(cfg.Path)
				if err != nil {
					log.Error("reload: config rejected, keeping the running one", "err", err)
					notify("READY=1")
					continue
				}
				if cfg.OnlyStreamsChanged(next) && !srv.ModelsChanged(next) {
					if err := srv.ReloadStreams(next.Streams); err != nil {
						log.Error("reload: some streams failed", "err", err)
					}
					log.Info("reload: streams updated", "streams", len(next.Streams))
					notify("READY=1")
					continue
				}
				if err := serve.CheckModels(next); err != nil {
					log.Error("reload: model not usable, keeping the running pipeline", "err", err)
					notify("READY=1")
					continue
				}
				log.Info("reload: models or settings changed; restarting the pipeline")
				cfg, restart = next, true
				stop()
			}
		}
	}
}
