package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
)

func newJoinTokenCommand(g *globals) *cobra.Command {
	jt := &cobra.Command{Use: "join-token", Short: "Admit agents: one-time tokens for `fog agent --join-token`"}
	var region, expires string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a one-time token with which one agent of a region joins (prints the token; -o json for its expiry too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var tok *fogclient.JoinToken
			b, err := c.answer(cmd.Context(), func(ctx context.Context) (err error) {
				tok, err = c.CreateJoinToken(ctx, fogclient.JoinTokenRequest{Region: region, ExpiresIn: expires})
				return err
			})
			if err != nil {
				return err
			}
			return g.printToken(cmd, tok.Token, b)
		},
	}
	create.Flags().StringVar(&region, "region", "", "region of the agent the token admits")
	create.Flags().StringVar(&expires, "expires-in", "1h", "how long the token stays valid (1m to 24h)")
	_ = create.MarkFlagRequired("region")
	jt.AddCommand(create)
	return jt
}
