package cli

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/api"
)

// printToken prints a created token alone, as kubeadm token create does, for $(...) in
// scripts; with -o the whole answer (id, expiry).
func (g *globals) printToken(cmd *cobra.Command, body []byte) error {
	if f := cmd.Flag("output"); f != nil && f.Changed {
		return g.print(body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil {
		return err
	}
	_, err := fmt.Fprintln(g.io.Out, out.Token)
	return err
}

// newTokenCommand manages API tokens: each is issued to a named principal, expires, and can
// be revoked.
func newTokenCommand(g *globals) *cobra.Command {
	tc := &cobra.Command{Use: "token", Short: "Manage API tokens: named principals, expiry, revocation"}
	var name, expires, tenant string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token for a principal (prints the token alone; -o json for its id and expiry)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			_, b, err := c.do(cmd.Context(), "POST", api.TokensPath, map[string]string{"name": name, "expiresIn": expires, "tenantId": tenant})
			if err != nil {
				return err
			}
			return g.printToken(cmd, b)
		},
	}
	create.Flags().StringVar(&name, "name", "", "the principal the token is for (such as ci or alice)")
	create.Flags().StringVar(&expires, "expires-in", "720h", "how long the token is valid (1m to 8784h)")
	create.Flags().StringVar(&tenant, "tenant", "", "the tenant the principal belongs to (default: the deployment's own)")
	_ = create.MarkFlagRequired("name")
	list := &cobra.Command{
		Use: "list", Short: "List tokens (ids, principals, expiry; never the tokens)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			_, b, err := c.do(cmd.Context(), "GET", api.TokensPath, nil)
			if err != nil {
				return err
			}
			return g.printLimited(b, 1<<30)
		},
	}
	var id string
	revoke := &cobra.Command{
		Use: "revoke", Short: "Revoke a token at once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			_, _, err = c.do(cmd.Context(), "DELETE", api.TokensPath+"/"+url.PathEscape(id), nil)
			return err
		},
	}
	revoke.Flags().StringVar(&id, "id", "", "the token's id, from fog token list (8 characters or more)")
	_ = revoke.MarkFlagRequired("id")
	tc.AddCommand(create, list, revoke)
	return tc
}
