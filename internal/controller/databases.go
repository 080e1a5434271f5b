package controller

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// readyInstance returns the instance if it exists and can take database operations.
func (c *Controller) readyInstance(ctx context.Context, sub, rg, mi string) (*resource.ManagedInstance, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	switch m.ProvisioningState {
	case resource.ProvisioningCreating, resource.ProvisioningDeleting:
		return nil, fault.New(fault.Conflict, "ConflictingServerOperation",
			"Managed instance '%s' is %s; retry the database operation when it is Ready.", mi, m.ProvisioningState)
	}
	return m, nil
}

// refresh asks the instance's agent for its current databases and waits briefly for the
// answer; writes use it to decide on a fresh view. If the agent does not answer in time the
// last observed list is used.
func (c *Controller) refresh(ctx context.Context, m *resource.ManagedInstance) []instance.DB {
	return c.refreshWithin(ctx, m, 3*time.Second)
}

// refreshWithin is refresh with a bound on the wait.
func (c *Controller) refreshWithin(ctx context.Context, m *resource.ManagedInstance, d time.Duration) []instance.DB {
	if _, err := c.eng.RunCommand(ctx, m.Location, instance.Command{InstanceUID: m.UID, Kind: instance.CmdRefresh}, d); err != nil {
		c.log.Warn("database refresh not answered; using last observed list", "instance", m.Name, "err", err)
	}
	st, _ := c.observed(ctx, m)
	return st.Databases
}

// dbViews is what the views of an instance's databases are made of beside the databases
// themselves: the instance's backups as its agent last reported them (nil: none), and the
// retention policies of its databases.
type dbViews struct {
	backup   *instance.BackupStatus
	policies map[string]int
	now      time.Time
}

// observedDBs is the instance's databases as its agent last published them (every second),
// with what their views need: reads never wait for an agent, which may be busy with a
// checkpoint or a recovery.
func (c *Controller) observedDBs(ctx context.Context, m *resource.ManagedInstance) ([]instance.DB, dbViews, error) {
	st, _ := c.observed(ctx, m)
	policies, err := c.retentionPolicies(ctx, m)
	if err != nil {
		return nil, dbViews{}, err
	}
	return st.Databases, dbViews{backup: st.Backup, policies: policies, now: time.Now()}, nil
}

func (c *Controller) dbView(m *resource.ManagedInstance, d instance.DB, v dbViews) resource.DatabaseJSON {
	created := d.Created
	days, ok := v.policies[d.Name]
	if !ok {
		days = resource.DefaultBackupRetentionDays
	}
	p := resource.DatabaseProperties{Collation: d.Collation, Status: "Online", CreationDate: &created}
	backupProperties(&p, v.backup, created, days, v.now)
	return resource.DatabaseJSON{
		ID: arm.DatabaseID(m.Subscription, m.ResourceGroup, m.Name, d.Name), Name: d.Name,
		Type: resource.TypeDatabase, Location: m.Location, Properties: p,
	}
}

// backupProperties fills in a database's read-only backup properties from its instance's
// backups b, for a database created at created that keeps days of point-in-time restore, at
// now. They are the instance's backups, not the database's own: PostgreSQL backs up a whole
// cluster, so every database of an instance is in each of its backups, and the last backup is
// the instance's.
//
// The earliest restore point is the end of the oldest backup in the repository (a restore
// starts from a backup and replays WAL from its end; the next whole second, as pgBackRest
// counts), but never before the database existed,
// nor further back than the database's own retention: the repository keeps the longest
// retention of the instance's databases (pgBackRest expires per cluster), and each database's
// window is narrowed to its own (docs/backups.md). Nothing is shown before the first backup.
func backupProperties(p *resource.DatabaseProperties, b *instance.BackupStatus, created time.Time, days int, now time.Time) {
	if b == nil || len(b.Backups) == 0 {
		return
	}
	oldest, last := b.Backups[0], b.Backups[0]
	for _, bk := range b.Backups[1:] {
		if bk.Start.Before(oldest.Start) {
			oldest = bk
		}
		if bk.Stop.After(last.Stop) {
			last = bk
		}
	}
	// pgBackRest compares whole seconds, and refuses a target in the second the backup ended.
	earliest := oldest.Stop.Truncate(time.Second).Add(time.Second)
	for _, t := range []time.Time{created, now.Add(-time.Duration(days) * 24 * time.Hour)} {
		if t.After(earliest) {
			earliest = t
		}
	}
	earliest = earliest.UTC()
	stop := last.Stop.UTC()
	size := last.Size
	took := int64(last.Stop.Sub(last.Start).Round(time.Second) / time.Second)
	p.EarliestRestorePoint, p.LastBackupTime, p.LastBackupSizeBytes, p.LastBackupDurationSeconds = &earliest, &stop, &size, &took
	p.LastBackupType = backupTypeName(last.Type)
}

// backupTypeName is a backup type as the API names it.
func backupTypeName(t string) string {
	switch t {
	case instance.BackupFull:
		return resource.BackupTypeFull
	case instance.BackupDiff:
		return resource.BackupTypeDifferential
	case "incr":
		return resource.BackupTypeIncremental
	}
	return t
}

// ListDatabases lists an instance's user databases.
func (c *Controller) ListDatabases(ctx context.Context, sub, rg, mi string) ([]resource.DatabaseJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	dbs, v, err := c.observedDBs(ctx, m)
	if err != nil {
		return nil, err
	}
	out := []resource.DatabaseJSON{}
	for _, d := range dbs {
		if !resource.IsSystemDatabase(d.Name) {
			out = append(out, c.dbView(m, d, v))
		}
	}
	return out, nil
}

// GetDatabase returns one user database.
func (c *Controller) GetDatabase(ctx context.Context, sub, rg, mi, db string) (resource.DatabaseJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return resource.DatabaseJSON{}, err
	}
	if !resource.IsSystemDatabase(db) {
		dbs, v, err := c.observedDBs(ctx, m)
		if err != nil {
			return resource.DatabaseJSON{}, err
		}
		for _, d := range dbs {
			if d.Name == db {
				return c.dbView(m, d, v), nil
			}
		}
	}
	return resource.DatabaseJSON{}, databaseNotFound(mi, db)
}

// databaseNotFound is the answer for a database that does not exist, to a database's GET and
// to a request on a resource beneath it alike.
func databaseNotFound(mi, db string) error {
	return resource.NotFound(resource.TypeDatabase, mi+"/"+db)
}

// PutDatabase creates a database. If it exists already the current resource is returned and
// no operation is started.
func (c *Controller) PutDatabase(ctx context.Context, sub, rg, mi, db string, body resource.DatabaseJSON) (*Operation, *resource.DatabaseJSON, error) {
	if err := resource.ValidateDatabaseName(db); err != nil {
		return nil, nil, err
	}
	m, err := c.readyInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, nil, err
	}
	if body.Location != "" && resource.NormalizeRegion([]string{m.Location}, body.Location) == "" {
		return nil, nil, fault.Invalid("InvalidLocation",
			"The database location '%s' differs from its managed instance's location '%s'; omit it or use the instance's.", body.Location, m.Location)
	}
	if body.Properties.Collation != "" && body.Properties.Collation != m.Collation {
		return nil, nil, fault.Invalid("InvalidCollation",
			"A database takes its instance's locale ('%s'); per-database collations other than that are not supported yet.", m.Collation)
	}
	switch mode := body.Properties.CreateMode; {
	case mode == "" || strings.EqualFold(mode, resource.CreateModeDefault):
	case strings.EqualFold(mode, resource.CreateModePointInTimeRestore):
		return c.restoreDatabase(ctx, m, db, body.Properties)
	case strings.EqualFold(mode, resource.CreateModeRecovery):
		return c.recoverDatabase(ctx, m, db, body.Properties)
	case strings.EqualFold(mode, resource.CreateModeRestoreLTR):
		return c.restoreLTRBackup(ctx, m, db, body.Properties)
	default:
		return nil, nil, fault.Invalid("InvalidCreateMode",
			"createMode '%s' is not supported; use Default (a new, empty database), PointInTimeRestore (with sourceDatabaseId and restorePointInTime), Recovery (with recoverableDatabaseId) or RestoreLongTermRetentionBackup (with longTermRetentionBackupResourceId).", mode)
	}
	for _, d := range c.refresh(ctx, m) {
		if d.Name == db {
			_, views, err := c.observedDBs(ctx, m)
			if err != nil {
				return nil, nil, err
			}
			v := c.dbView(m, d, views)
			return nil, &v, nil
		}
	}
	return c.databaseCommand(ctx, m, KindPutDatabase, "CreateManagedDatabase", instance.Command{Kind: instance.CmdCreateDatabase, Database: db})
}

// restoreDatabase starts restoring a database of m as it was at a point in time, as the new
// database db of m (docs/backups.md). The time must lie in the window the instance's
// backups and archived WAL cover: from one second after the end of its oldest backup (and not
// before the source database was created) until now.
func (c *Controller) restoreDatabase(ctx context.Context, m *resource.ManagedInstance, db string, p resource.DatabaseProperties) (*Operation, *resource.DatabaseJSON, error) {
	if p.RestorableDroppedDatabaseID != "" {
		return c.restoreDroppedDatabase(ctx, m, db, p)
	}
	if p.SourceDatabaseID == "" || p.RestorePointInTime == nil {
		return nil, nil, fault.Invalid("InvalidRestoreParameters",
			"createMode PointInTimeRestore needs properties.sourceDatabaseId (the resource id of the database to restore) and properties.restorePointInTime (an ISO 8601 time in UTC), or properties.restorableDroppedDatabaseId (a dropped database, from restorableDroppedDatabases).")
	}
	src, srcName, err := arm.ParseDatabaseID(p.SourceDatabaseID)
	if err != nil {
		return nil, nil, fault.Invalid("InvalidSourceDatabaseId", "sourceDatabaseId: %v.", err)
	}
	// The source may be another instance of the same region that the caller can read: its
	// region's agent restores from its repository into this one.
	srcMI := m
	if !strings.EqualFold(src.Subscription, m.Subscription) || !strings.EqualFold(src.ResourceGroup, m.ResourceGroup) || !strings.EqualFold(src.Name, m.Name) {
		if srcMI, _, err = c.readableInstance(ctx, src.Subscription, src.ResourceGroup, src.Name); err != nil {
			return nil, nil, err
		}
		if !strings.EqualFold(srcMI.Location, m.Location) {
			return nil, nil, fault.Invalid("CrossRegionRestoreNotSupported",
				"The source database's instance '%s' is in %s and '%s' in %s: a point-in-time restore reads the backups of the target's region. Restore into an instance of %s.",
				srcMI.Name, srcMI.Location, m.Name, m.Location, srcMI.Location)
		}
		switch srcMI.ProvisioningState {
		case resource.ProvisioningCreating, resource.ProvisioningDeleting:
			return nil, nil, fault.New(fault.Conflict, "ConflictingServerOperation",
				"The source database's instance '%s' is %s; retry the restore when it is Ready.", srcMI.Name, srcMI.ProvisioningState)
		}
	}
	for _, d := range c.refresh(ctx, m) {
		if d.Name == db {
			return nil, nil, fault.New(fault.Conflict, "DatabaseAlreadyExists",
				"Database '%s' already exists on managed instance '%s'; a restore makes a new database: choose another name.", db, m.Name)
		}
	}
	var source *instance.DB
	for _, d := range c.refresh(ctx, srcMI) {
		if d.Name == srcName {
			source = &d
		}
	}
	if source == nil || resource.IsSystemDatabase(srcName) {
		return nil, nil, resource.NotFound(resource.TypeDatabase, srcMI.Name+"/"+srcName)
	}
	_, views, err := c.observedDBs(ctx, srcMI)
	if err != nil {
		return nil, nil, internalError(err)
	}
	// The window is the one the database's GET shows (earliestRestorePoint), until now.
	v := c.dbView(srcMI, *source, views)
	if v.Properties.EarliestRestorePoint == nil {
		return nil, nil, fault.New(fault.Conflict, "NoBackupAvailable",
			"Managed instance '%s' has no backup yet to restore from: its first full backup is taken shortly after it is created. Retry once the database shows an earliestRestorePoint.", m.Name)
	}
	earliest := *v.Properties.EarliestRestorePoint
	now := time.Now().UTC()
	at := p.RestorePointInTime.UTC()
	if at.Before(earliest) || at.After(now) {
		return nil, nil, fault.Invalid("RestorePointInTimeOutOfRange",
			"The restore point in time %s is outside database '%s''s restore window, %s to now (%s); choose a time inside it.",
			at.Format(time.RFC3339), srcName, earliest.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	cmd := instance.Command{Kind: instance.CmdRestoreDatabase, Database: db, SourceDatabase: srcName, Time: at}
	if srcMI != m {
		cmd.SourceInstanceUID = srcMI.UID
	}
	return c.databaseCommand(ctx, m, KindRestoreDatabase, "RestoreManagedDatabase", cmd)
}

// DeleteDatabase drops a database; a nil operation means it did not exist.
func (c *Controller) DeleteDatabase(ctx context.Context, sub, rg, mi, db string) (*Operation, error) {
	m, err := c.readyInstance(ctx, sub, rg, mi)
	if err != nil {
		if errors.Is(err, fault.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if resource.IsSystemDatabase(db) {
		return nil, fault.Invalid("CannotUseReservedDatabaseName", "The system database '%s' cannot be dropped.", db)
	}
	found := false
	for _, d := range c.refresh(ctx, m) {
		found = found || d.Name == db
	}
	if !found {
		return nil, nil
	}
	op, _, aerr := c.databaseCommand(ctx, m, KindDeleteDatabase, "DropManagedDatabase", instance.Command{Kind: instance.CmdDropDatabase, Database: db})
	return op, aerr
}

// databaseCommand records operation kind (named name) with the agent's command cmd for it, of
// the database cmd.Database, owned by the instance's admin, in one transaction.
func (c *Controller) databaseCommand(ctx context.Context, m *resource.ManagedInstance, kind, name string, cmd instance.Command) (*Operation, *resource.DatabaseJSON, error) {
	db := cmd.Database
	op := c.newOp(ctx, kind, name, m.Subscription, m, arm.DatabaseID(m.Subscription, m.ResourceGroup, m.Name, db))
	op.Database = db
	cmd.ID, cmd.InstanceUID, cmd.Owner, cmd.Created = resource.NewUID(), m.UID, m.AdministratorLogin, time.Now().UTC()
	op.CommandID = cmd.ID
	ops := []store.Op{store.PutOp(instance.CommandKey(m.Location, cmd.ID), cmd), store.PutOp(opKey(op.ID), op)}
	if kind == KindPutDatabase && m.RetentionDays() < resource.DefaultBackupRetentionDays {
		// A new database keeps Azure's default retention until a policy says otherwise; the
		// instance's backups, which keep the longest of its databases', must keep that long.
		if err := c.writeRetention(ctx, m, func(cur *resource.ManagedInstance, _ map[string]int) int {
			return max(cur.RetentionDays(), resource.DefaultBackupRetentionDays)
		}, ops...); err != nil {
			return nil, nil, err
		}
	} else if err := c.st.Txn(ctx, nil, ops); err != nil {
		return nil, nil, internalError(err)
	}
	c.log.Info("accepted", "operation", name, "id", op.ID, "database", op.ResourceID)
	c.kickOp(op.ID)
	return op, nil, nil
}
