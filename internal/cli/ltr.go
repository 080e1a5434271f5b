package cli

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/resource"
)

// newLTRPolicyCommand is az's `sql midb ltr-policy`: a database's long-term retention policy.
func newLTRPolicyCommand(g *globals) *cobra.Command {
	pol := &cobra.Command{Use: "ltr-policy", Short: "Manage a database's long-term backup retention (az sql midb ltr-policy)"}
	var name, rg, mi, weekly, monthly, yearly, week string
	var noWait bool
	common := func(c *cobra.Command) {
		c.Flags().StringVarP(&name, "name", "n", "", "database name")
		c.Flags().StringVar(&name, "database", "", "database name (or -n)")
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group")
		c.Flags().StringVar(&mi, "managed-instance", "", "managed instance name")
		c.Flags().StringVar(&mi, "mi", "", "[Required] managed instance name (or --managed-instance)")
		_ = c.MarkFlagRequired("resource-group")
	}
	require := func() error {
		if mi == "" {
			return usageErr("--mi", "the managed instance name is required")
		}
		if name == "" {
			return usageErr("--name", "the database name is required")
		}
		return nil
	}
	set := &cobra.Command{
		Use: "set", Short: "Set the weekly, monthly and yearly backups a database keeps", Args: cobra.NoArgs,
		Long: "Set a database's long-term retention: the first full backup of each week is kept for --weekly-retention, the first of each month for --monthly-retention, " +
			"and the first of week --week-of-year for --yearly-retention. Retentions are ISO 8601 durations (P12W, P6M, P5Y; at most ten years), PT0S for none; " +
			"a retention not given keeps its current value.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require(); err != nil {
				return err
			}
			for _, f := range []struct{ flag, v string }{{"--weekly-retention", weekly}, {"--monthly-retention", monthly}, {"--yearly-retention", yearly}} {
				if f.v == "" {
					continue
				}
				if _, err := ltr.ParseDuration(f.v); err == ltr.ErrDuration {
					return usageErr(f.flag, "%q is not an ISO 8601 duration: give one such as P12W, P6M or P5Y, or PT0S for none", f.v)
				}
			}
			weekN := -1
			if week != "" {
				n, err := strconv.Atoi(week)
				if err != nil {
					return usageErr("--week-of-year", "%q is not a week of the year: give 1 to 52", week)
				}
				weekN = n
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			cur, err := c.GetLongTermRetentionPolicy(cmd.Context(), rg, mi, name)
			if err != nil {
				return c.explain(err)
			}
			p := cur.Properties
			p.WeeklyRetention = orKeep(weekly, p.WeeklyRetention)
			p.MonthlyRetention = orKeep(monthly, p.MonthlyRetention)
			p.YearlyRetention = orKeep(yearly, p.YearlyRetention)
			if weekN >= 0 {
				p.WeekOfYear = weekN
			}
			op, err := c.BeginSetLongTermRetentionPolicy(cmd.Context(), rg, mi, name, p)
			return g.finish(cmd, c, op, err, noWait, "Setting long-term retention", true)
		},
	}
	common(set)
	set.Flags().StringVar(&weekly, "weekly-retention", "", "how long each week's first full backup is kept (ISO 8601: P12W; PT0S for none)")
	set.Flags().StringVar(&monthly, "monthly-retention", "", "how long each month's first full backup is kept (ISO 8601: P6M; PT0S for none)")
	set.Flags().StringVar(&yearly, "yearly-retention", "", "how long the full backup of --week-of-year is kept (ISO 8601: P5Y; PT0S for none)")
	set.Flags().StringVar(&week, "week-of-year", "", "the week of the year (1 to 52) whose full backup the yearly retention keeps")
	set.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")
	show := &cobra.Command{
		Use: "show", Short: "Show a database's long-term retention policy", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := require(); err != nil {
				return err
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.GetLongTermRetentionPolicy(ctx, rg, mi, name)
				return err
			})
		},
	}
	common(show)
	pol.AddCommand(set, show)
	return pol
}

func orKeep(v, cur string) string {
	if v == "" {
		return cur
	}
	return strings.ToUpper(v)
}

// newLTRBackupCommand is az's `sql midb ltr-backup`: the backups long-term retention keeps.
func newLTRBackupCommand(g *globals) *cobra.Command {
	lb := &cobra.Command{Use: "ltr-backup", Short: "Manage the backups long-term retention keeps (az sql midb ltr-backup)"}
	var location, mi, db, rg, backupName, backupID, state string
	var destDB, destMI, destRG string
	var noWait, yes bool
	scope := func(c *cobra.Command) {
		c.Flags().StringVarP(&location, "location", "l", "", "the location of the backups")
		c.Flags().StringVar(&mi, "managed-instance", "", "managed instance name")
		c.Flags().StringVar(&mi, "mi", "", "managed instance name (or --managed-instance)")
		c.Flags().StringVarP(&db, "database", "d", "", "database name")
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group of the managed instance")
	}
	one := func(c *cobra.Command) {
		scope(c)
		c.Flags().StringVarP(&backupName, "backup-name", "n", "", "the backup's name (as listed)")
		c.Flags().StringVar(&backupName, "name", "", "the backup's name (or --backup-name)")
		c.Flags().StringVar(&backupID, "backup-id", "", "the backup's resource id (as listed); instead of --location, --mi, --database and --backup-name")
		c.Flags().StringVar(&backupID, "id", "", "the backup's resource id (or --backup-id)")
	}
	// id is the backup the flags name.
	id := func(c *client) (string, error) {
		if backupID != "" {
			if _, err := resource.ParseLTRBackupID(backupID); err != nil {
				return "", usageErr("--backup-id", "%s", err)
			}
			return backupID, nil
		}
		for _, f := range []struct{ flag, v string }{{"--location", location}, {"--mi", mi}, {"--database", db}, {"--backup-name", backupName}} {
			if f.v == "" {
				return "", usageErr(f.flag, "is required without --backup-id")
			}
		}
		return c.LongTermRetentionBackupsPath(rg, location, mi, db, backupName), nil
	}
	list := &cobra.Command{
		Use: "list", Short: "List the long-term retention backups of a location, an instance or a database", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if location == "" {
				return usageErr("--location", "the location is required")
			}
			if db != "" && mi == "" {
				return usageErr("--mi", "is required with --database")
			}
			if !slices.Contains([]string{"", "All", "Live", "Deleted"}, state) {
				return usageErr("--database-state", "%q: use All, Live or Deleted", state)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			bs, err := c.ListLongTermRetentionBackups(cmd.Context(), rg, location, mi, db)
			if err != nil {
				return c.explain(err)
			}
			out := []fogclient.LongTermRetentionBackup{}
			for _, b := range bs {
				deleted := b.Properties.DatabaseDeletionTime != nil
				if state == "Live" && deleted || state == "Deleted" && !deleted {
					continue
				}
				out = append(out, b)
			}
			b, err := json.Marshal(map[string]any{"value": out})
			if err != nil {
				return err
			}
			return g.print(b)
		},
	}
	scope(list)
	list.Flags().StringVar(&state, "database-state", "", "list the backups of databases that are Live, Deleted, or All (default)")
	show := &cobra.Command{
		Use: "show", Short: "Show a long-term retention backup", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.show(cmd, func(ctx context.Context, c *client) error {
				p, err := id(c)
				if err != nil {
					return err
				}
				_, err = c.GetLongTermRetentionBackup(ctx, p)
				return err
			})
		},
	}
	one(show)
	del := &cobra.Command{
		Use: "delete", Short: "Delete a long-term retention backup", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := id(c)
			if err != nil {
				return err
			}
			if !yes {
				return usageErr("--yes", "deleting a long-term retention backup cannot be undone: confirm with --yes")
			}
			op, err := c.BeginDeleteLongTermRetentionBackup(cmd.Context(), p)
			return g.finish(cmd, c, op, err, noWait, "Deleting long-term retention backup", false)
		},
	}
	one(del)
	del.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	del.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")
	restore := &cobra.Command{
		Use: "restore", Short: "Restore a long-term retention backup as a new database", Args: cobra.NoArgs,
		Long: "Restore the database of a long-term retention backup (--backup-id, as listed) as it was at the end of that backup, as the new database --dest-database of --dest-mi (an instance of the backup's region).",
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case backupID == "":
				return usageErr("--backup-id", "the resource id of the backup to restore is required (ltr-backup list shows it)")
			case destDB == "":
				return usageErr("--dest-database", "the name of the new database is required")
			case destMI == "":
				return usageErr("--dest-mi", "the managed instance to restore into is required")
			case destRG == "":
				return usageErr("--dest-resource-group", "the resource group of --dest-mi is required")
			}
			if _, err := resource.ParseLTRBackupID(backupID); err != nil {
				return usageErr("--backup-id", "%s", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginRestoreLongTermRetentionBackup(cmd.Context(), backupID, destRG, destMI, destDB)
			return g.finish(cmd, c, op, err, noWait, "Restoring long-term retention backup", true)
		},
	}
	restore.Flags().StringVar(&backupID, "backup-id", "", "[Required] the backup's resource id (as listed)")
	restore.Flags().StringVar(&backupID, "id", "", "the backup's resource id (or --backup-id)")
	restore.Flags().StringVar(&destDB, "dest-database", "", "[Required] name of the new database")
	restore.Flags().StringVar(&destMI, "dest-mi", "", "[Required] the managed instance to restore into")
	restore.Flags().StringVar(&destRG, "dest-resource-group", "", "[Required] the resource group of --dest-mi")
	restore.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")
	lb.AddCommand(list, show, del, restore)
	return lb
}
