// Command yedge is an int8 inference runtime for edge devices: it runs
// YOLOv5 ONNX models (FP32 or Q/DQ int8) through onnxruntime on camera
// streams, evaluates and inspects models.
//
// Exit codes: 0 success (also a clean stop by Ctrl-C/SIGTERM), 1 failure,
// 2 usage error (also an input file refused: a FIFO, a device, too large),
// 3 model error, 4 onnxruntime library or provider unavailable, 5 source
// error, 130 interrupted before a result.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	// Headless: OpenCV's GUI module (and Qt with it) stays out of the binary.
	"github.com/yedge/yedge/internal/fsx"
	_ "github.com/yedge/yedge/internal/headless"
	"github.com/yedge/yedge/onnxrt"
	"github.com/yedge/yedge/pipeline"
	"github.com/yedge/yedge/plan"
)

// isTerminal reports whether f is a terminal (for progress bars).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitModel       = 3
	exitRuntime     = 4
	exitSource      = 5
	exitInterrupted = 130
)

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code, err}
}

// globalFlags are shared by every command.
type globalFlags struct {
	ortLib    string
	provider  string
	threads   int
	deviceID  int
	trtCache  string
	trtFP16   bool
	trtINT8   bool
	logLevel  string
	logFormat string
}

func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(g.logLevel, g.logFormat, w)
}

// newLogger makes the logger of a level and format.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level %q: want debug, info, warn or error", level)
	}
	return leveledLogger(lvl, format, w)
}

// leveledLogger makes the logger of format at level, which may be a
// *slog.LevelVar that changes later (the daemon's, on reload).
func leveledLogger(level slog.Leveler, format string, w io.Writer) (*slog.Logger, error) {
	o := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("log-format %q: want text or json", format)
}

// overrides are the global flags given on the command line, which override
// a configuration file (changed reports whether a flag was given).
func (g *globalFlags) overrides(changed func(string) bool) plan.Overrides {
	return plan.Overrides{
		Library: given(changed, "ort-lib", &g.ortLib), Provider: given(changed, "provider", &g.provider),
		Threads: given(changed, "threads", &g.threads), DeviceID: given(changed, "device-id", &g.deviceID),
		TRTCache: given(changed, "trt-cache", &g.trtCache), TRTFP16: given(changed, "trt-fp16", &g.trtFP16),
		TRTINT8: given(changed, "trt-int8", &g.trtINT8), LogLevel: given(changed, "log-level", &g.logLevel),
		LogFormat: given(changed, "log-format", &g.logFormat),
	}
}

// given returns v when the flag was given on the command line, else nil.
func given[T any](changed func(string) bool, flag string, v *T) *T {
	if changed(flag) {
		return v
	}
	return nil
}

// runtimeOptions returns the session options from the flags.
func (g *globalFlags) runtimeOptions() onnxrt.Options {
	t := onnxrt.DefaultTensorRTOptions(g.trtCache)
	t.FP16, t.INT8 = g.trtFP16, g.trtINT8
	return onnxrt.Options{Provider: g.provider, DeviceID: g.deviceID, Threads: g.threads, TensorRT: t}
}

// initRuntime loads the onnxruntime library and logs which one.
func (g *globalFlags) initRuntime(log *slog.Logger) error {
	c, err := initLibrary(g.ortLib, "")
	if err != nil {
		return err
	}
	log.Debug("onnxruntime loaded", "library", c.Path, "from", c.Origin, "version", onnxrt.Version())
	return nil
}

// initLibrary loads the onnxruntime library (from the --ort-lib flag, the
// config's onnxruntime.library, or the standard places) and names the flag
// and key in its error: runtime speaks of an explicit path.
func initLibrary(flag, config string) (onnxrt.LibraryCandidate, error) {
	c, err := onnxrt.Init(flag, config)
	if err != nil {
		return c, withCode(exitRuntime, fmt.Errorf("%w; --ort-lib PATH or the config's onnxruntime.library sets it", err))
	}
	if c.Origin == onnxrt.OriginExplicit {
		c.Origin = "--ort-lib"
	}
	return c, nil
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "yedge",
		Short: "int8 YOLOv5 inference on edge devices",
		Long: `yedge runs YOLOv5 ONNX models (FP32, or Q/DQ int8) through onnxruntime
(TensorRT, CUDA or CPU) on cameras, videos, streams and images.

Exit codes: 0 ok, 1 failure, 2 usage error, 3 model error,
4 onnxruntime library or provider unavailable, 5 source error, 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.ortLib, "ort-lib", "", "path of libonnxruntime.so (else $"+onnxrt.EnvLibrary+", config, setup folder, system)")
	pf.StringVar(&g.provider, "provider", "auto", "execution provider: auto|tensorrt|cuda|cpu")
	pf.IntVar(&g.threads, "threads", 0, fmt.Sprintf("intra-op threads, in [0, %d] (0: all cores)", onnxrt.MaxThreads))
	pf.IntVar(&g.deviceID, "device-id", 0, fmt.Sprintf("GPU index for CUDA and TensorRT, in [0, %d]", onnxrt.MaxDeviceID))
	pf.StringVar(&g.trtCache, "trt-cache", onnxrt.DefaultTensorRTCacheDir(), "TensorRT engine and timing cache folder ($CACHE_DIRECTORY/tensorrt under systemd)")
	pf.BoolVar(&g.trtFP16, "trt-fp16", true, "allow TensorRT FP16 kernels")
	pf.BoolVar(&g.trtINT8, "trt-int8", true, "allow TensorRT INT8 kernels")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text|json")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		// Cobra checks required flags and flag groups after this hook,
		// with untyped errors: checked here first, they are usage errors.
		if err := c.ValidateRequiredFlags(); err != nil {
			return withCode(exitUsage, err)
		}
		if err := c.ValidateFlagGroups(); err != nil {
			return withCode(exitUsage, err)
		}
		if !slices.Contains(onnxrt.Providers, g.provider) {
			return withCode(exitUsage, fmt.Errorf("--provider %q: want one of %s", g.provider, strings.Join(onnxrt.Providers, ", ")))
		}
		if err := firstErr(
			keyInRange("threads", "provider.threads", float64(g.threads), true),
			keyInRange("device-id", "provider.device_id", float64(g.deviceID), true),
		); err != nil {
			return err
		}
		if _, err := g.logger(io.Discard); err != nil {
			return withCode(exitUsage, fmt.Errorf("--%w", err))
		}
		return nil
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return withCode(exitUsage, err) })
	root.AddCommand(newDetectCmd(g), newEvalCmd(g), newInspectCmd(g), newVersionCmd(g), newQuantizeCmd(g))
	root.AddCommand(newBenchCmd(g))
	root.AddCommand(newConfigCmd(g))
	root.AddCommand(newServeCmd(g))
	root.AddCommand(newManCmd())
	// Without a command, help; with an unknown one, a usage error (cobra
	// checks the arguments of a runnable command only).
	root.Args = cobra.NoArgs
	root.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	usageArgs(root)
	return root
}

// usageArgs makes the argument errors of c and its subcommands usage
// errors (exit 2), as the flag errors are (SetFlagErrorFunc).
func usageArgs(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return withCode(exitUsage, err)
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// modelCode maps the typed errors of the pipeline and its runners
// (model, source, runtime, input size) to exit codes.
func modelCode(err error) error {
	var me *pipeline.ModelError
	var se *pipeline.SourceError
	switch {
	case errors.As(err, &me):
		return withCode(exitModel, err)
	case errors.As(err, &se):
		return withCode(exitSource, err)
	case errors.Is(err, onnxrt.ErrProviderUnavailable):
		return withCode(exitRuntime, err)
	case errors.Is(err, pipeline.ErrInputTooLarge):
		return withCode(exitUsage, err)
	}
	return err
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code. A panic
// anywhere below is caught and reported as a one-line internal error
// (exit 1): no Go stack trace ever reaches the user.
func run(args []string, stdout, stderr io.Writer) int {
	return guard(stderr, func() int { return execute(args, stdout, stderr) })
}

// guard calls f and turns a panic into a one-line "yedge: internal error"
// on stderr and exit code 1.
func guard(stderr io.Writer, f func() int) (code int) {
	defer func() {
		if r := recover(); r != nil {
			msg := strings.Join(strings.Fields(fmt.Sprint(r)), " ")
			fmt.Fprintf(stderr, "yedge: internal error: %s (please report this)\n", msg)
			code = exitFailure
		}
	}()
	return f()
}

// execute runs the root command and maps its error to an exit code.
func execute(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "yedge: "+strings.TrimSpace(err.Error()))
	// A signal that cut a step short is an interruption, whatever the
	// step would have called its failure (a source still opening: 5).
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return exitInterrupted
	}
	// A file refused before it was read (a FIFO, a device, over its
	// size limit) is the user's input at fault, whatever read it.
	if errors.Is(err, fsx.ErrNotRegular) || errors.Is(err, fsx.ErrTooLarge) {
		return exitUsage
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	return exitFailure
}
