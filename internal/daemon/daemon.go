// Package daemon is the fog binary's process commands: `fog up`, `fog server`, `fog agent`
// and the hidden `fog guard`, which run Fog (packages server, regional and guard) rather than
// call its API. Package cli runs them beside its client commands: cmd/fog hands it
// Commands, so the client commands never import what the processes run.
package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/cli"
)

// daemon holds what the process commands share: where they write.
type daemon struct{ io cli.IO }

// Commands returns the process commands, writing to stdio; they take none of the client
// commands' flags.
func Commands(stdio cli.IO) []*cobra.Command {
	d := &daemon{io: stdio}
	return []*cobra.Command{d.upCommand(), d.serverCommand(), d.agentCommand(), d.guardCommand()}
}

// usageErr is a bad flag value, reported as the client commands report theirs: the flag and
// what to do (exit code 2).
func usageErr(flag, format string, args ...any) error {
	return &cli.UsageError{Msg: fmt.Sprintf("argument %s: %s", flag, fmt.Sprintf(format, args...))}
}

// warn prints a WARNING line.
func (d *daemon) warn(format string, args ...any) {
	fmt.Fprintf(d.io.Err, "WARNING: "+format+"\n", args...)
}

func (d *daemon) logger(logLevel string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, usageErr("--log-level", "use debug, info, warn or error")
	}
	return slog.New(slog.NewTextHandler(d.io.Err, &slog.HandlerOptions{Level: level})), nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// listFlag is a comma-separated list flag, bound to a []string; in help it reads as a
// string flag with its default quoted.
type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	*l.v = splitList(s)
	return nil
}

func (listFlag) Type() string { return "string" }

// banner prints where the client config and the CA are, as absolute paths, and commands that
// work from any directory.
func banner(w io.Writer, apiURL, clientFile string) {
	cfg, err := filepath.Abs(clientFile)
	if err != nil {
		cfg = clientFile
	}
	fmt.Fprintf(w, "Console: %s/ (sign in with the token in the client config: fog account get-access-token)\n", apiURL)
	fmt.Fprintf(w, "CA certificate: %s\n", filepath.Join(filepath.Dir(cfg), "ca.crt"))
	fmt.Fprintf(w, "Client config:  %s\n", cfg)
	fmt.Fprintf(w, "In another terminal (fog on your PATH: go build -o bin/fog ./cmd/fog && export PATH=\"$PWD/bin:$PATH\"):\n")
	fmt.Fprintf(w, "  export FOG_CONFIG=%s\n  fog sql mi list\n", cfg)
}
