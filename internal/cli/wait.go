package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	jmespath "github.com/jmespath-community/go-jmespath"
	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
)

// truthy is JMESPath's truth: false, null, "", [] and {} are false.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// noWaitHint prints, for --no-wait, the operation that runs on and the command that waits for
// it (az's `wait`), built from the command's own flags.
func (g *globals) noWaitHint(cmd *cobra.Command, header http.Header) error {
	op := header.Get("Azure-AsyncOperation")
	id := op
	if u, err := url.Parse(op); err == nil {
		id = u.Path[strings.LastIndex(u.Path, "/")+1:]
	}
	cond := map[string]string{"create": "--created", "delete": "--deleted"}[cmd.Name()]
	if cond == "" {
		cond = "--updated"
	}
	wait := cmd.Parent().CommandPath() + " wait"
	var waitCmd *cobra.Command
	for _, c := range cmd.Parent().Commands() {
		if c.Name() == "wait" {
			waitCmd = c
		}
	}
	for _, f := range []string{"resource-group", "location", "mi", "name"} {
		if waitCmd == nil || waitCmd.Flags().Lookup(f) == nil {
			continue // the wait command does not take it
		}
		if fl := cmd.Flags().Lookup(f); fl != nil && fl.Value.String() != "" {
			wait += fmt.Sprintf(" --%s %s", f, fl.Value.String())
		}
	}
	if cmd.Parent().Name() == "instance-failover-group" && !strings.Contains(wait, "--location") {
		// A group's create names no region: the operation's URL does.
		if u, err := url.Parse(op); err == nil {
			segs := strings.Split(u.Path, "/")
			for i := 0; i+1 < len(segs); i++ {
				if strings.EqualFold(segs[i], "locations") {
					wait += " --location " + segs[i+1]
				}
			}
		}
	}
	wait += " " + cond
	b := fmt.Appendf(nil, `{"operationId": %q, "status": "InProgress", "azureAsyncOperation": %q}`, id, op)
	if err := g.print(b); err != nil {
		return err
	}
	if g.output != "none" && !g.onlyErrors && waitCmd != nil {
		fmt.Fprintf(g.io.Err, "The operation runs on. To wait for it: %s\n", wait)
	}
	return nil
}

// newWaitCommand is az's `wait`: poll a resource until a condition holds.
func newWaitCommand(g *globals, what string, path func(c *client, rg, loc, mi, name string) string, withLocation, withMI bool) *cobra.Command {
	var rg, loc, mi, name string
	var created, updated, deleted, exists bool
	var custom string
	var interval, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until the " + what + " is created, updated or deleted (az's wait)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, b := range []bool{created, updated, deleted, exists, custom != ""} {
				if b {
					n++
				}
			}
			if n != 1 {
				return usageErr("--created", "give exactly one of --created, --updated, --deleted, --exists, --custom")
			}
			var cond jmespath.JMESPath
			if custom != "" {
				var err error
				if cond, err = jmespath.Compile(custom); err != nil {
					return usageErr("--custom", "invalid JMESPath expression %q: %v", custom, err)
				}
			}
			if withMI && mi == "" {
				return usageErr("--mi", "the managed instance name is required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			p := path(c, rg, loc, mi, name)
			deadline := time.Now().Add(timeout)
			for {
				var b []byte
				resp, err := c.Do(cmd.Context(), http.MethodGet, p, nil, nil)
				gone := fogclient.IsNotFound(err)
				if err != nil && !gone {
					return c.explain(err)
				}
				if resp != nil {
					b = resp.Body
				}
				done := false
				switch {
				case deleted:
					done = gone
				case exists:
					done = !gone
				case cond != nil && gone:
				case cond != nil:
					var v any
					if err := json.Unmarshal(b, &v); err != nil {
						return fmt.Errorf("decode the %s: %w", what, err)
					}
					r, err := cond.Search(flatten(v))
					if err != nil {
						return usageErr("--custom", "%v", err)
					}
					done = truthy(r)
				case !gone:
					props, perr := propsOf(b)
					if perr == nil {
						state, _ := props["provisioningState"].(string)
						switch state {
						case "Succeeded", "":
							done = true
						case "Failed", "Canceled":
							return fmt.Errorf("the %s's provisioningState is %s", what, state)
						}
					}
				}
				if done {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("the %s did not reach the condition within %s", what, timeout)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(interval):
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&rg, "resource-group", "g", "", "resource group")
	fl.StringVarP(&name, "name", "n", "", what+" name")
	if withLocation {
		fl.StringVarP(&loc, "location", "l", "", "region")
		_ = cmd.MarkFlagRequired("location")
	}
	if withMI {
		fl.StringVar(&mi, "mi", "", "[Required] managed instance name (or --managed-instance)")
		fl.StringVar(&mi, "managed-instance", "", "managed instance name")
	}
	fl.BoolVar(&created, "created", false, "wait until it exists and its provisioning succeeded")
	fl.BoolVar(&updated, "updated", false, "wait until its provisioning succeeded")
	fl.BoolVar(&deleted, "deleted", false, "wait until it is gone")
	fl.BoolVar(&exists, "exists", false, "wait until it exists")
	fl.StringVar(&custom, "custom", "", "wait until this JMESPath expression on the resource (as show prints it) is true, e.g. \"provisioningState=='Succeeded'\"")
	fl.DurationVar(&interval, "interval", time.Second, "time between polls")
	fl.DurationVar(&timeout, "timeout", time.Hour, "give up after this long")
	_ = cmd.MarkFlagRequired("resource-group")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
