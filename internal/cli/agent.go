package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/agentapi"
	"github.com/fogdb/fog/internal/fogclient"
)

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
