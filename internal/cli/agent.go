package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/instance"
)

// joinTokenEnv is the environment variable `fog agent` reads a join token from.
const joinTokenEnv = "FOG_JOIN_TOKEN"

// joinToken returns the join token `fog agent` was given: --join-token-file, else
// --join-token, else $FOG_JOIN_TOKEN; "" when none. A token on the command line is in every
// local user's `ps` until the agent exits, so that form gets a warning; a token file others
// can read gets one too. The variable is removed from the environment once read, so that
// nothing the agent starts (the guard, PostgreSQL) inherits the secret.
func joinToken(g *globals, flagToken, file string) (string, error) {
	env := os.Getenv(joinTokenEnv)
	_ = os.Unsetenv(joinTokenEnv)
	switch {
	case file != "" && flagToken != "":
		return "", usageErr("--join-token-file", "give the join token once: --join-token-file or --join-token, not both")
	case file != "":
		fi, err := os.Stat(file)
		if err != nil {
			return "", usageErr("--join-token-file", "%v", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			g.warn("the join token file %s can be read by other users (mode %04o): create it with umask 077 or chmod 600 it", file, fi.Mode().Perm())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageErr("--join-token-file", "%v", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", usageErr("--join-token-file", "%s is empty: write the token `fog join-token create` prints into it", file)
		}
		return tok, nil
	case flagToken != "":
		g.warn("--join-token shows the token to every user of this machine (ps); prefer --join-token-file FILE or $%s", joinTokenEnv)
		return flagToken, nil
	}
	return strings.TrimSpace(env), nil
}

// agentClient is the agent's link to the servers with its saved credentials. When the
// servers answer that those were revoked, a join token given this time joins the agent again
// (new key and certificate, same data directory and instances); without one, the agent stops
// with what to do rather than run cut off.
func agentClient(ctx context.Context, servers []string, creds *agentapi.Credentials, token string, log *slog.Logger) (*agentapi.Client, error) {
	client, err := agentapi.NewClient(servers, creds, log.With("component", "agentapi"))
	if err != nil {
		return nil, err
	}
	_, err = client.Get(ctx, instance.ClusterKey)
	if !errors.Is(err, agentapi.ErrRevoked) {
		return client, nil // the servers may be unreachable yet: the agent waits for them
	}
	client.Close()
	if token == "" {
		return nil, fmt.Errorf("this agent's certificate was revoked: start it with a new token from `fog join-token create --region %s` in --join-token-file or $%s to join again (%w)",
			creds.Region, joinTokenEnv, err)
	}
	log.Warn("this agent's certificate was revoked; joining again with the token given", "err", err)
	if creds, err = agentapi.Join(ctx, servers, token, creds.Region, creds.Dir); err != nil {
		return nil, err
	}
	return agentapi.NewClient(servers, creds, log.With("component", "agentapi"))
}

// newAgentRevokeCommand revokes agent certificates: the servers refuse them from the next
// request on, and the agent must join again with a new token.
func newAgentRevokeCommand(g *globals) *cobra.Command {
	var sel agentapi.Revocation
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke agents' certificates at once: every agent of a region, one agent (--agent), or one certificate (--serial)",
		Long: `Revoke agent certificates. The servers refuse a revoked certificate from its next request on
(open watches end within a heartbeat); its agent can neither read nor write the store, so it
cannot renew its lease and its guard fences its primaries. A revoked agent started again with a
new join token ('fog join-token create') joins again, keeping its data directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, f := range []string{sel.Region, sel.Agent, sel.Serial} {
				if f != "" {
					n++
				}
			}
			if n != 1 {
				return usageErr("--region", "give one of --region, --agent (an id from `fog agent list`) and --serial")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.RevokeAgents(ctx, fogclient.AgentRevocation(sel))
				return err
			})
			if err != nil {
				return err
			}
			return g.printValue(b)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sel.Region, "region", "", "revoke every agent certificate of this `REGION`")
	fl.StringVar(&sel.Agent, "agent", "", "revoke one agent (its certificate and every renewal of it): its `ID` from 'fog agent list', 8 characters or more")
	fl.StringVar(&sel.Serial, "serial", "", "revoke one certificate by its `SERIAL` number (hex)")
	g.clientFlags(cmd)
	return cmd
}

// newAgentListCommand lists the agent certificates the servers signed.
func newAgentListCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List agent certificates: agent id, region, serial, expiry, renewals and revocations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.ListAgents(ctx)
				return err
			})
			if err != nil {
				return err
			}
			return g.printValue(b)
		},
	}
	g.clientFlags(cmd)
	return cmd
}

// printValue prints the list in a {"value": [...]} answer, as az prints lists.
func (g *globals) printValue(body []byte) error {
	var out struct {
		Value []map[string]any `json:"value"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	if out.Value == nil {
		out.Value = []map[string]any{}
	}
	return g.render(out.Value)
}
