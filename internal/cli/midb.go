package cli

import (
	"net/url"

	"github.com/spf13/cobra"
)

func newMIDBCommand(g *globals) *cobra.Command {
	midb := &cobra.Command{Use: "midb", Short: "Manage databases of managed instances (az sql midb)"}
	var name, rg, mi, collation string
	var noWait, yes bool
	path := func() string {
		c, err := g.client()
		if err != nil {
			return ""
		}
		return c.instancePath(rg, mi) + "/databases/" + url.PathEscape(name)
	}
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
			props := map[string]any{}
			if cmd.Flags().Changed("collation") {
				props["collation"] = collation
			}
			return g.put(cmd, path(), map[string]any{"properties": props}, noWait, "Creating database")
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
			return g.get(cmd, path())
		},
	}
	common(show, true)

	list := &cobra.Command{
		Use: "list", Short: "List the user databases of an instance", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			return g.get(cmd, c.instancePath(rg, mi)+"/databases")
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
			return g.delete(cmd, path(), noWait, "Deleting database")
		},
	}
	common(del, true)
	del.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	del.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")

	midb.AddCommand(create, show, list, del,
		newWaitCommand(g, "database", func(c *client, rg, _, mi, name string) string {
			return c.instancePath(rg, mi) + "/databases/" + url.PathEscape(name)
		}, false, true))
	return midb
}
