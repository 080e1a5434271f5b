package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

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

	var destName, destRG, destMI, at, deletedAt string
	restore := &cobra.Command{
		Use: "restore", Short: "Restore a database to a point in time as a new database", Args: cobra.NoArgs,
		Long: "Restore a database as it was at a point in time (--time, in UTC unless it names its zone) as a new database (--dest-name) of the same managed instance, or of another of its region (--dest-mi). " +
			"A dropped database is named by its name and --deleted-time (its deletionDate in list-deleted); without --time it is restored as it was when dropped.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			if destName == "" {
				return usageErr("--dest-name", "the name of the new database is required")
			}
			var t, deleted time.Time
			var err error
			if deletedAt != "" {
				if deleted, err = parseRestoreTime(deletedAt); err != nil {
					return usageErr("--deleted-time", "%s", err)
				}
			}
			if at != "" || deletedAt == "" {
				if t, err = parseRestoreTime(at); err != nil {
					return usageErr("--time", "%s", err)
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var op *fogclient.Operation
			if deletedAt != "" {
				var pt *time.Time
				if at != "" {
					pt = &t
				}
				op, err = c.BeginRestoreDroppedDatabase(cmd.Context(), rg, mi, name, deleted, pt, cmp.Or(destRG, rg), cmp.Or(destMI, mi), destName)
			} else {
				op, err = c.BeginRestoreDatabase(cmd.Context(), rg, mi, name, t, cmp.Or(destRG, rg), cmp.Or(destMI, mi), destName)
			}
			return g.finish(cmd, c, op, err, noWait, "Restoring database", true)
		},
	}
	common(restore, true)
	restore.Flags().StringVar(&destName, "dest-name", "", "[Required] name of the new database the restore creates")
	restore.Flags().StringVarP(&at, "time", "t", "", "[Required unless --deleted-time] the point in time to restore to, as yyyy-mm-ddThh:mm:ss (UTC) or with a zone (RFC 3339)")
	restore.Flags().StringVar(&deletedAt, "deleted-time", "", "restore a dropped database: the time it was dropped (deletionDate in list-deleted)")
	restore.Flags().StringVar(&destMI, "dest-mi", "", "the managed instance to restore into (default: the source's; another must be in the source's region)")
	restore.Flags().StringVar(&destRG, "dest-resource-group", "", "the resource group of --dest-mi (default: the source's)")
	restore.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")

	listDeleted := &cobra.Command{
		Use: "list-deleted", Short: "List the databases dropped from an instance that its backups can restore", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.ListRestorableDroppedDatabases(ctx, rg, mi)
				return err
			})
		},
	}
	common(listDeleted, false)

	var recoverableID string
	recover := &cobra.Command{
		Use: "recover", Short: "Geo-restore a database from the copy of its instance's backups in another region", Args: cobra.NoArgs,
		Long: "Recover a database (--recoverable-database-id, an id from `fog sql recoverable-midb list` of its instance) as the new database --name of the managed instance --mi, " +
			"which must be in the region that holds the copy (the partner region of the source's failover group), to the last point that copy holds.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			if recoverableID == "" {
				return usageErr("--recoverable-database-id", "the id of the database to recover is required (from fog sql recoverable-midb list)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			op, err := c.BeginRecoverDatabase(cmd.Context(), recoverableID, rg, mi, name)
			return g.finish(cmd, c, op, err, noWait, "Recovering database", true)
		},
	}
	common(recover, true)
	recover.Flags().StringVarP(&recoverableID, "recoverable-database-id", "r", "", "[Required] the recoverable database's resource id")
	recover.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the operation to finish")

	midb.AddCommand(create, show, list, del, restore, recover, listDeleted, newShortTermRetentionCommand(g),
		newLTRPolicyCommand(g), newLTRBackupCommand(g),
		newWaitCommand(g, "database", func(c *client, rg, _, mi, name string) string {
			return c.DatabasePath(rg, mi, name)
		}, false, true))
	return midb
}

// parseRestoreTime reads a point in time as az does: ISO 8601, in UTC unless it names a zone.
func parseRestoreTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("the point in time to restore to is required, such as 2026-12-03T14:05:00")
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a point in time: give yyyy-mm-ddThh:mm:ss (UTC) or RFC 3339 with a zone", s)
}

// newRecoverableMIDBCommand is az sql recoverable-midb: the databases of an instance that a
// geo-restore can recover.
func newRecoverableMIDBCommand(g *globals) *cobra.Command {
	rec := &cobra.Command{Use: "recoverable-midb", Short: "Databases a geo-restore can recover (az sql recoverable-midb)"}
	var rg, mi, name string
	flags := func(c *cobra.Command) {
		c.Flags().StringVarP(&rg, "resource-group", "g", "", "[Required] resource group")
		c.Flags().StringVar(&mi, "mi", "", "[Required] managed instance name (or --instance-name)")
		c.Flags().StringVar(&mi, "instance-name", "", "managed instance name")
		_ = c.MarkFlagRequired("resource-group")
	}
	requireMI := func() error {
		if mi == "" {
			return usageErr("--mi", "the managed instance name is required")
		}
		return nil
	}
	list := &cobra.Command{
		Use: "list", Short: "List the databases of an instance that a geo-restore can recover", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.ListRecoverableDatabases(ctx, rg, mi)
				return err
			})
		},
	}
	flags(list)
	show := &cobra.Command{
		Use: "show", Short: "Show a database a geo-restore can recover", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireMI(); err != nil {
				return err
			}
			if name == "" {
				return usageErr("--database-name", "the database name is required")
			}
			return g.show(cmd, func(ctx context.Context, c *client) error {
				_, err := c.GetRecoverableDatabase(ctx, rg, mi, name)
				return err
			})
		},
	}
	flags(show)
	show.Flags().StringVarP(&name, "database-name", "n", "", "[Required] database name")
	rec.AddCommand(list, show)
	return rec
}
