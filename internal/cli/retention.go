package cli

import (
	"context"
	"strconv"

	"github.com/spf13/cobra"
)

// newShortTermRetentionCommand is az's `sql midb short-term-retention-policy`: a database's
// point-in-time restore window, in days.
func newShortTermRetentionCommand(g *globals) *cobra.Command {
	str := &cobra.Command{Use: "short-term-retention-policy", Short: "Manage a database's short-term backup retention (az sql midb short-term-retention-policy)"}
	var name, rg, mi, days string
	var noWait bool
	common := func(c *cobra.Command) {
		c.Flags().StringVarP(&name, "name", "n", "", "database name")
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group")
		c.Flags().StringVar(&mi, "managed-instance", "", "managed instance name")
		c.Flags().StringVar(&mi, "mi", "", "[Required] managed instance name (or --managed-instance)")
		_ = c.MarkFlagRequired("name")
		_ = c.MarkFlagRequired("resource-group")
	}
	requireMI := func() error {
		if mi == "" {
			return usageErr("--mi", "the managed instance name is required")
		}
		return nil
	}

	set := &cobra.Command{
		Use: "set", Short: "Set how many days of point-in-time restore a database keeps", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			// The range (1 to 35 days) is the API's to check, as az leaves it to Azure; a
			// value that is no number of days at all is a bad command line.
			n, err := strconv.Atoi(days)
			if err != nil {
				return usageErr("--retention-days", "%q is not a whole number of days: give 1 to 35", days)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginSetShortTermRetentionPolicy(cmd.Context(), rg, mi, name, n)
			return g.finish(cmd, c, op, err, noWait, "Setting short-term retention", true)
		},
	}
	common(set)
	set.Flags().StringVar(&days, "retention-days", "", "days of point-in-time restore to keep, 1 to 35 (7 until set)")
	set.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")
	_ = set.MarkFlagRequired("retention-days")

	show := &cobra.Command{
		Use: "show", Short: "Show how many days of point-in-time restore a database keeps", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.GetShortTermRetentionPolicy(ctx, rg, mi, name)
				return err
			})
		},
	}
	common(show)

	str.AddCommand(set, show)
	return str
}
