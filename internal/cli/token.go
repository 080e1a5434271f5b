package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
)

// printToken prints a created token alone, as kubeadm token create does, for $(...) in
// scripts; with -o the whole answer (id, expiry).
func (g *globals) printToken(cmd *cobra.Command, token string, body []byte) error {
	if f := cmd.Flag("output"); f != nil && f.Changed {
		return g.print(body)
	}
	_, err := fmt.Fprintln(g.io.Out, token)
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
			var tok *fogclient.Token
			b, err := c.answer(cmd.Context(), func(ctx context.Context) (err error) {
				tok, err = c.CreateToken(ctx, fogclient.TokenRequest{Name: name, ExpiresIn: expires, TenantID: tenant})
				return err
			})
			if err != nil {
				return err
			}
			return g.printToken(cmd, tok.Token, b)
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
			b, err := c.answer(cmd.Context(), func(ctx context.Context) error {
				_, err := c.ListTokens(ctx)
				return err
			})
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
			return c.explain(c.RevokeToken(cmd.Context(), id))
		},
	}
	revoke.Flags().StringVar(&id, "id", "", "the token's id, from fog token list (8 characters or more)")
	_ = revoke.MarkFlagRequired("id")
	tc.AddCommand(create, list, revoke)
	return tc
}
