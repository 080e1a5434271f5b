package controller

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// Geo-restore (docs/backups.md): the members of a failover group are one PostgreSQL system
// and each writes the group's stanza into its own region's repository, the standby's region
// with backups taken from the standby. So the partner region holds a complete copy of an
// instance's backups and WAL, read by the partner's OS user there, and a database can be
// recovered from it into an instance of that region when the instance's own region is gone
// (Azure's recoverableDatabases and createMode Recovery), to the end of the WAL archived
// there.

// geoCopy is where a geo-restore of instance m's databases reads: the group partner that
// writes m's stanza in its own region's repository, and what its agent last reported.
type geoCopy struct {
	holder *resource.ManagedInstance
	status instance.Status
}

// geoCopyOf finds m's partner, if m is in a failover group; ok is false when it is not.
func (c *Controller) geoCopyOf(ctx context.Context, m *resource.ManagedInstance) (geoCopy, bool, error) {
	if m.FailoverGroup == "" {
		return geoCopy{}, false, nil
	}
	var g group.FailoverGroup
	if _, err := store.Get(ctx, c.st, group.Key(m.FailoverGroup), &g); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return geoCopy{}, false, nil
		}
		return geoCopy{}, false, internalError(err)
	}
	for _, side := range g.Sides {
		if side.InstanceUID == m.UID || side.InstanceUID == "" {
			continue
		}
		var p resource.ManagedInstance
		if _, err := store.Get(ctx, c.st, miKey(side.Subscription, side.ResourceGroup, side.InstanceName), &p); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return geoCopy{}, false, nil
			}
			return geoCopy{}, false, internalError(err)
		}
		st, _ := c.observed(ctx, &p)
		return geoCopy{holder: &p, status: st}, true, nil
	}
	return geoCopy{}, false, nil
}

// last is the newest point the copy holds: the end of its newest backup, or the last WAL
// archived after it; zero without a backup.
func (g geoCopy) last() (backup, archived time.Time) {
	b := g.status.Backup
	if b == nil || len(b.Backups) == 0 {
		return time.Time{}, time.Time{}
	}
	for _, bk := range b.Backups {
		if bk.Stop.After(backup) {
			backup = bk.Stop
		}
	}
	archived = backup
	if b.Archive.LastArchivedAt.After(archived) {
		archived = b.Archive.LastArchivedAt
	}
	return backup.UTC(), archived.UTC()
}

// recoverableViews are m's databases that a geo-restore can recover: those of the copy's
// holder (the same system: its databases are m's), once the copy has a backup.
func (c *Controller) recoverableViews(ctx context.Context, m *resource.ManagedInstance) ([]resource.RecoverableDatabaseJSON, geoCopy, error) {
	switch r := m.StorageRedundancy(); r {
	case "Local", "Zone":
		// Azure's code and rule: Local and Zone keep backups in the instance's region only.
		return nil, geoCopy{}, fault.Invalid("MiGeoRestoreWithWrongBackupStorageRedundancy",
			"Managed instance '%s' keeps its backups with backupStorageRedundancy %s, in its own region only: geo-restore needs Geo or GeoZone. Restore its databases with createMode PointInTimeRestore in %s.", m.Name, r, m.Location)
	}
	g, ok, err := c.geoCopyOf(ctx, m)
	if err != nil || !ok {
		return nil, g, err
	}
	backup, archived := g.last()
	if backup.IsZero() {
		return nil, g, nil
	}
	var out []resource.RecoverableDatabaseJSON
	for _, d := range g.status.Databases {
		if resource.IsSystemDatabase(d.Name) {
			continue
		}
		out = append(out, resource.RecoverableDatabaseJSON{
			ID: arm.RecoverableDatabaseID(m.Subscription, m.ResourceGroup, m.Name, d.Name), Name: d.Name,
			Type: resource.TypeRecoverableDatabase,
			Properties: resource.RecoverableDatabaseProperties{LastAvailableBackupDate: backup.Format(time.RFC3339),
				GeoBackupRegion: g.holder.Location, LastArchivedTime: archived},
		})
	}
	slices.SortFunc(out, func(a, b resource.RecoverableDatabaseJSON) int { return strings.Compare(a.Name, b.Name) })
	return out, g, nil
}

// ListRecoverableDatabases lists the databases of an instance that a geo-restore can
// recover from the copy of its backups in its partner region.
func (c *Controller) ListRecoverableDatabases(ctx context.Context, sub, rg, mi string) ([]resource.RecoverableDatabaseJSON, error) {
	m, _, err := c.readableInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	out, _, err := c.recoverableViews(ctx, m)
	if out == nil {
		out = []resource.RecoverableDatabaseJSON{}
	}
	return out, err
}

// GetRecoverableDatabase returns one of them.
func (c *Controller) GetRecoverableDatabase(ctx context.Context, sub, rg, mi, db string) (resource.RecoverableDatabaseJSON, error) {
	m, _, err := c.readableInstance(ctx, sub, rg, mi)
	if err != nil {
		return resource.RecoverableDatabaseJSON{}, err
	}
	vs, _, err := c.recoverableViews(ctx, m)
	if err != nil {
		return resource.RecoverableDatabaseJSON{}, err
	}
	for _, v := range vs {
		if v.Name == db {
			return v, nil
		}
	}
	return resource.RecoverableDatabaseJSON{}, resource.NotFound(resource.TypeRecoverableDatabase, mi+"/"+db)
}

// recoverDatabase starts a geo-restore (createMode Recovery): the database named by
// p.RecoverableDatabaseID, recovered as the new database db of m from the copy of its
// instance's backups in m's region, to the end of the WAL archived there. The copy's holder,
// the source instance's partner, is in m's region: its agent, m's, restores the scratch
// cluster from it as the holder's OS user; nothing is asked of the source's region.
func (c *Controller) recoverDatabase(ctx context.Context, m *resource.ManagedInstance, db string, p resource.DatabaseProperties) (*Operation, *resource.DatabaseJSON, error) {
	if p.RecoverableDatabaseID == "" || p.SourceDatabaseID != "" || p.RestorableDroppedDatabaseID != "" || p.RestorePointInTime != nil {
		return nil, nil, fault.Invalid("InvalidRestoreParameters",
			"createMode Recovery needs properties.recoverableDatabaseId (from the source instance's recoverableDatabases) and nothing of a point-in-time restore: a geo-restore recovers to the last point its region's copy of the backups holds.")
	}
	src, srcName, err := arm.ParseRecoverableDatabaseID(p.RecoverableDatabaseID)
	if err != nil {
		return nil, nil, fault.Invalid("InvalidRecoverableDatabaseId", "recoverableDatabaseId: %v.", err)
	}
	srcMI, _, err := c.readableInstance(ctx, src.Subscription, src.ResourceGroup, src.Name)
	if err != nil {
		return nil, nil, err
	}
	vs, g, err := c.recoverableViews(ctx, srcMI)
	if err != nil {
		return nil, nil, err
	}
	if g.holder == nil {
		return nil, nil, fault.New(fault.Conflict, "GeoBackupNotAvailable",
			"Managed instance '%s' has no copy of its backups in another region: Fog keeps one in the partner region of a failover group. Restore it with createMode PointInTimeRestore in its own region instead.", srcMI.Name)
	}
	if !strings.EqualFold(g.holder.Location, m.Location) {
		return nil, nil, fault.New(fault.Conflict, "GeoBackupNotAvailable",
			"The copy of managed instance '%s''s backups is in %s, and '%s' is in %s: recover the database into an instance of %s.",
			srcMI.Name, g.holder.Location, m.Name, m.Location, g.holder.Location)
	}
	if vs == nil {
		return nil, nil, fault.New(fault.Conflict, "NoBackupAvailable",
			"The copy of managed instance '%s''s backups in %s has no backup yet: the partner region takes its first full backup shortly after the group is created. Retry once recoverableDatabases lists the database.", srcMI.Name, g.holder.Location)
	}
	if !slices.ContainsFunc(vs, func(v resource.RecoverableDatabaseJSON) bool { return v.Name == srcName }) {
		return nil, nil, resource.NotFound(resource.TypeRecoverableDatabase, srcMI.Name+"/"+srcName)
	}
	for _, d := range c.refresh(ctx, m) {
		if d.Name == db {
			return nil, nil, fault.New(fault.Conflict, "DatabaseAlreadyExists",
				"Database '%s' already exists on managed instance '%s'; a restore makes a new database: choose another name.", db, m.Name)
		}
	}
	cmd := instance.Command{Kind: instance.CmdRestoreDatabase, Database: db, SourceDatabase: srcName, Latest: true}
	if g.holder.UID != m.UID {
		cmd.SourceInstanceUID = g.holder.UID
	}
	return c.databaseCommand(ctx, m, KindRestoreDatabase, "RestoreManagedDatabase", cmd)
}
