package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
)

func newMIDBCommand(g *globals) *cobra.Command {
	midb := &cobra.Command{Use: "midb", Short: "Manage databases of managed instances (az sql midb)"}
	var name, rg, mi, collation string
	var noWait, yes bool
	common := func(c *cobra.Command, withName bool) {
		if withName {
			c.Flags().StringVarP(&name, "name", "n", "", "database name")
			_ = c.MarkFlagRequired("name")
		}
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group")
		c.Flags().StringVar(&mi, "managed-instance", "", "managed instance name")
		c.Flags().StringVar(&mi, "mi", "", "[Required] managed instance name (or --managed-instance)")
		_ = c.MarkFlagRequired("resource-group")
	}
	requireMI := func() error {
		if mi == "" {
			return usageErr("--mi", "the managed instance name is required")
		}
		return nil
	}

	create := &cobra.Command{
		Use: "create", Short: "Create a database", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			var db fogclient.Database
			if cmd.Flags().Changed("collation") {
				db.Properties.Collation = collation
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginCreateDatabase(cmd.Context(), rg, mi, name, db)
			return g.finish(cmd, c, op, err, noWait, "Creating database", true)
		},
	}
	common(create, true)
	create.Flags().StringVar(&collation, "collation", "", "collation (must match the instance's locale)")
	create.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")

	show := &cobra.Command{
		Use: "show", Short: "Show a database", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.GetDatabase(ctx, rg, mi, name)
				return err
			})
		},
	}
	common(show, true)

	list := &cobra.Command{
		Use: "list", Short: "List the user databases of an instance", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.ListDatabases(ctx, rg, mi)
				return err
			})
		},
	}
	common(list, false)

	del := &cobra.Command{
		Use: "delete", Short: "Delete a database", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			if err := g.confirm(yes); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginDeleteDatabase(cmd.Context(), rg, mi, name)
			return g.finish(cmd, c, op, err, noWait, "Deleting database", false)
		},
	}
	common(del, true)
	del.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	del.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")

	midb.AddCommand(create, show, list, del, newShortTermRetentionCommand(g),
		newWaitCommand(g, "database", func(c *client, rg, _, mi, name string) string {
			return c.DatabasePath(rg, mi, name)
		}, false, true))
	return midb
}
