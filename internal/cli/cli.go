// Package cli is the fog command line and its client commands: the az-shaped `fog sql mi`,
// `fog sql midb` and `fog sql instance-failover-group` groups, tokens, roles and join tokens,
// which call Fog's API. The process commands (`fog up`, `fog server`, `fog agent`) live in
// package daemon and are handed to Run, so that nothing here imports what they run.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/failpoint"
	"github.com/fogdb/fog/internal/fogclient"
)

// IO is where commands read and write.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
}

type globals struct {
	config       string
	subscription string
	output       string
	query        string
	// onlyErrors, verbose, debug: az's --only-show-errors, --verbose and --debug.
	onlyErrors, verbose, debug bool
	io                         IO
}

// Run runs the fog command line with args (without the program name). process make the
// commands that run Fog rather than call it (package daemon's Commands); the client commands
// are always there.
func Run(ctx context.Context, args []string, stdio IO, process ...func(IO) []*cobra.Command) error {
	if err := failpoint.FromEnv(); err != nil {
		return err
	}
	root := newRoot(stdio, process)
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Msg: err.Error()} })
	var groups func(c *cobra.Command)
	groups = func(c *cobra.Command) {
		c.SuggestionsMinimumDistance = 2
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil && c != root {
			c.Args = cobra.ArbitraryArgs
			c.RunE = groupRunE
		}
		for _, sub := range c.Commands() {
			groups(sub)
		}
	}
	groups(root)
	markRequired(root)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	cmd, err := root.ExecuteContextC(ctx)
	if cmd != nil && cmd.Name() == "show" {
		err = shown(err)
	}
	return asUsage(root, err)
}

func newRoot(stdio IO, process []func(IO) []*cobra.Command) *cobra.Command {
	g := &globals{io: stdio}
	root := &cobra.Command{
		Use:           "fog",
		Short:         "Fog: failover groups for PostgreSQL, managed like Azure SQL Managed Instance",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	sql := &cobra.Command{Use: "sql", Short: "Manage managed instances and their databases"}
	sql.AddCommand(newMICommand(g), newMIDBCommand(g), newRecoverableMIDBCommand(g), newGroupCommand(g))
	// The server side (up, server, agent, guard) takes none of the client's flags; the client
	// command groups take them all, as az's global arguments.
	clients := []*cobra.Command{newJoinTokenCommand(g), newTokenCommand(g), newRoleCommand(g), newAccountCommand(g), newVersionCommand(g), newMonitorCommand(g), sql}
	for _, c := range clients {
		g.clientFlags(c)
	}
	agentCmd := &cobra.Command{Use: "agent", Short: "Manage the agents' certificates"}
	for _, p := range process {
		for _, c := range p(stdio) {
			if c.Name() == agentCmd.Name() {
				agentCmd = c // `fog agent` runs an agent; its subcommands are clients
				continue
			}
			root.AddCommand(c)
		}
	}
	agentCmd.AddCommand(newAgentListCommand(g), newAgentRevokeCommand(g))
	root.AddCommand(agentCmd)
	root.AddCommand(clients...)
	return root
}

// clientFlags adds az's global arguments to a client command and everything under it.
func (g *globals) clientFlags(c *cobra.Command) {
	pf := c.PersistentFlags()
	pf.StringVar(&g.config, "config", "", "client config file (default $FOG_CONFIG or .fog/client.json)")
	pf.StringVar(&g.subscription, "subscription", "", "subscription id (default: the one in the client config)")
	pf.StringVarP(&g.output, "output", "o", "json", "output format: "+strings.Join(outputFormats, ", "))
	pf.StringVar(&g.query, "query", "", "JMESPath query applied to the output, as az's (for example \"[].name\" or \"properties.host\")")
	pf.BoolVar(&g.onlyErrors, "only-show-errors", false, "only show errors, suppressing warnings and progress")
	pf.BoolVar(&g.verbose, "verbose", false, "log each request and its time to stderr")
	pf.BoolVar(&g.debug, "debug", false, "log requests and responses in full to stderr (tokens and passwords redacted)")
}

// markRequired marks required flags in help, as az's "[Required]": cobra enforces them but
// does not say so.
func markRequired(c *cobra.Command) {
	c.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if req := f.Annotations[cobra.BashCompOneRequiredFlag]; len(req) > 0 && req[0] == "true" && !strings.HasPrefix(f.Usage, "[Required]") {
			f.Usage = "[Required] " + f.Usage
		}
	})
	for _, sub := range c.Commands() {
		markRequired(sub)
	}
}

// warn prints an az WARNING line unless --only-show-errors.
func (g *globals) warn(format string, args ...any) {
	if !g.onlyErrors {
		fmt.Fprintf(g.io.Err, "WARNING: "+format+"\n", args...)
	}
}

func (g *globals) client() (*client, error) {
	if !validOutput(g.output) {
		return nil, usageErr("--output", "use one of %s", strings.Join(outputFormats, ", "))
	}
	path := g.config
	if path == "" {
		path = defaultConfigPath()
	}
	var opts []fogclient.Option
	if g.verbose || g.debug {
		opts = append(opts, fogclient.WithTracer(&tracer{w: g.io.Err, debug: g.debug}))
	}
	return loadClient(path, g.subscription, opts...)
}

// UsageError is a command line fog cannot run: an unknown command or flag, a missing or bad
// argument. It exits with 2, as az does.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// usageErr is a bad flag value, reported like az does: the flag and what to do.
func usageErr(flag, format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf("argument %s: %s", flag, fmt.Sprintf(format, args...))}
}

// ExitCode is the process exit code for err, az's: 0 success, 1 an error, 2 a usage error,
// 3 a resource that a show command did not find.
func ExitCode(err error) int {
	var ue *UsageError
	var se *shownError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	case errors.As(err, &se) && fogclient.IsNotFound(se.error):
		return 3
	}
	return 1
}

// groupRunE makes a command group answer an unknown subcommand as az does: exit 2, naming it
// and the nearest one. Without arguments a group shows its help.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	return unknownCommand(cmd, args[0])
}

func unknownCommand(cmd *cobra.Command, typed string) error {
	msg := fmt.Sprintf("'%s' is misspelled or not recognized by the system.", typed)
	if s := cmd.SuggestionsFor(typed); len(s) > 0 {
		msg += fmt.Sprintf(" Did you mean '%s %s'?", cmd.CommandPath(), s[0])
	}
	return &UsageError{Msg: msg + fmt.Sprintf(" See '%s --help'.", cmd.CommandPath())}
}

// asUsage turns cobra's own argument errors into UsageErrors.
func asUsage(root *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	m := err.Error()
	if typed, ok := strings.CutPrefix(m, "unknown command \""); ok {
		typed, _, _ = strings.Cut(typed, "\"")
		return unknownCommand(root, typed)
	}
	for _, p := range []string{"unknown flag", "unknown shorthand flag", "required flag", "invalid argument", "flag needs an argument", "accepts ", "unknown command"} {
		if strings.HasPrefix(m, p) {
			return &UsageError{Msg: m}
		}
	}
	return err
}

// print writes an ARM body as az does: properties flattened into the top level and the
// resource group added.
func (g *globals) print(body []byte) error {
	if len(body) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if m, ok := v.(map[string]any); ok {
		if list, ok := m["value"].([]any); ok {
			for i := range list {
				list[i] = flatten(list[i])
			}
			v = list
		} else {
			v = flatten(m)
		}
	}
	return g.render(v)
}

func flatten(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, val := range m {
		if k != "properties" {
			out[k] = val
		}
	}
	if p, ok := m["properties"].(map[string]any); ok {
		for k, val := range p {
			out[k] = val
		}
	}
	if id, ok := m["id"].(string); ok {
		parts := strings.Split(id, "/")
		for i := 0; i+1 < len(parts); i++ {
			if strings.EqualFold(parts[i], "resourceGroups") {
				out["resourceGroup"] = parts[i+1]
			}
		}
	}
	return out
}

// progressFor shows a spinner line on a terminal, as az does while it waits.
func (g *globals) progressFor(what string) func(arm.OperationStatus) {
	if g.onlyErrors {
		return nil
	}
	f, ok := g.io.Err.(*os.File)
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	frames := []string{"|", "/", "-", "\\"}
	i := 0
	return func(st arm.OperationStatus) {
		status, pct := st.Status, st.PercentComplete
		p := ""
		if pct != nil {
			p = fmt.Sprintf(" %.0f%%", *pct)
		}
		fmt.Fprintf(f, "\r %s %s: %s%s   ", frames[i%len(frames)], what, status, p)
		i++
		if strings.EqualFold(status, "succeeded") || strings.EqualFold(status, "failed") {
			fmt.Fprint(f, "\r\033[K")
		}
	}
}

// confirm asks the az question; without a yes on the input, the answer is no.
func (g *globals) confirm(yes bool) error {
	if yes {
		return nil
	}
	fmt.Fprint(g.io.Err, "Are you sure you want to perform this operation? (y/n): ")
	line, _ := bufio.NewReader(g.io.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
		return nil
	}
	return errors.New("operation cancelled (pass --yes to skip the question)")
}
