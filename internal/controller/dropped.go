package controller

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
)

// droppedView is a restorable dropped database with the drop it is.
type droppedView struct {
	json resource.RestorableDroppedDatabaseJSON
	drop instance.DroppedDB
}

// droppedViews are the databases dropped from instance m that its backups can restore, as
// its agent last published them (it finds each drop in the instance's WAL): those dropped
// within their retention, and for which a backup ended before the drop.
func (c *Controller) droppedViews(ctx context.Context, m *resource.ManagedInstance) ([]droppedView, error) {
	st, _ := c.observed(ctx, m)
	policies, err := c.retentionPolicies(ctx, m)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []droppedView
	for _, d := range st.Dropped {
		days, ok := policies[d.Name]
		if !ok {
			days = resource.DefaultBackupRetentionDays
		}
		var p resource.DatabaseProperties
		backupProperties(&p, st.Backup, d.Created, days, now)
		if p.EarliestRestorePoint == nil || p.EarliestRestorePoint.After(d.Deleted) {
			continue
		}
		out = append(out, droppedView{drop: d, json: resource.RestorableDroppedDatabaseJSON{
			ID:   arm.RestorableDroppedDatabaseID(m.Subscription, m.ResourceGroup, m.Name, d.Name, d.Deleted),
			Name: arm.RestorableDroppedDatabaseName(d.Name, d.Deleted), Type: resource.TypeRestorableDroppedDatabase,
			Location: m.Location,
			Properties: resource.RestorableDroppedDatabaseProperties{DatabaseName: d.Name, CreationDate: d.Created.UTC(),
				DeletionDate: d.Deleted.UTC(), EarliestRestoreDate: p.EarliestRestorePoint.UTC()},
		}})
	}
	return out, nil
}

// ListRestorableDroppedDatabases lists the databases dropped from an instance that its
// backups can restore.
func (c *Controller) ListRestorableDroppedDatabases(ctx context.Context, sub, rg, mi string) ([]resource.RestorableDroppedDatabaseJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return nil, err
	}
	vs, err := c.droppedViews(ctx, m)
	if err != nil {
		return nil, err
	}
	out := make([]resource.RestorableDroppedDatabaseJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.json)
	}
	return out, nil
}

// GetRestorableDroppedDatabase returns one, by its name ("<database>,<deletion file time>").
func (c *Controller) GetRestorableDroppedDatabase(ctx context.Context, sub, rg, mi, name string) (resource.RestorableDroppedDatabaseJSON, error) {
	m, _, err := c.getInstance(ctx, sub, rg, mi)
	if err != nil {
		return resource.RestorableDroppedDatabaseJSON{}, err
	}
	db, ft, err := arm.ParseRestorableDroppedDatabaseName(name)
	if err != nil {
		return resource.RestorableDroppedDatabaseJSON{}, resource.NotFound(resource.TypeRestorableDroppedDatabase, mi+"/"+name)
	}
	v, err := c.findDropped(ctx, m, db, ft)
	if err != nil {
		return resource.RestorableDroppedDatabaseJSON{}, err
	}
	return v.json, nil
}

// findDropped finds the restorable dropped database db of m deleted at file time ft: at
// that time exactly, or, for a time in whole seconds (as a person types it), in that second.
func (c *Controller) findDropped(ctx context.Context, m *resource.ManagedInstance, db string, ft int64) (droppedView, error) {
	vs, err := c.droppedViews(ctx, m)
	if err != nil {
		return droppedView{}, err
	}
	for _, v := range vs {
		if v.drop.Name != db {
			continue
		}
		if arm.FileTime(v.drop.Deleted) == ft || ft%10_000_000 == 0 && arm.FileTime(v.drop.Deleted.Truncate(time.Second)) == ft {
			return v, nil
		}
	}
	return droppedView{}, resource.NotFound(resource.TypeRestorableDroppedDatabase, m.Name+"/"+db+","+strconv.FormatInt(ft, 10))
}

// restoreDroppedDatabase starts restoring a database dropped from m as the new database db
// of m: as it was when dropped, or at p.RestorePointInTime, which must lie between the
// earliest restore date and the drop.
func (c *Controller) restoreDroppedDatabase(ctx context.Context, m *resource.ManagedInstance, db string, p resource.DatabaseProperties) (*Operation, *resource.DatabaseJSON, error) {
	if p.SourceDatabaseID != "" {
		return nil, nil, fault.Invalid("InvalidRestoreParameters",
			"Give either properties.sourceDatabaseId (a database to restore) or properties.restorableDroppedDatabaseId (a dropped one), not both.")
	}
	src, name, ft, err := arm.ParseRestorableDroppedDatabaseID(p.RestorableDroppedDatabaseID)
	if err != nil {
		return nil, nil, fault.Invalid("InvalidRestorableDroppedDatabaseId", "restorableDroppedDatabaseId: %v.", err)
	}
	if !strings.EqualFold(src.Subscription, m.Subscription) || !strings.EqualFold(src.ResourceGroup, m.ResourceGroup) || !strings.EqualFold(src.Name, m.Name) {
		return nil, nil, fault.Invalid("CrossInstanceRestoreNotSupported",
			"Fog restores a dropped database into the managed instance it was dropped from only; restore it into '%s'.", src.Name)
	}
	for _, d := range c.refresh(ctx, m) {
		if d.Name == db {
			return nil, nil, fault.New(fault.Conflict, "DatabaseAlreadyExists",
				"Database '%s' already exists on managed instance '%s'; a restore makes a new database: choose another name.", db, m.Name)
		}
	}
	v, err := c.findDropped(ctx, m, name, ft)
	if err != nil {
		return nil, nil, err
	}
	at := v.drop.Deleted.UTC()
	if p.RestorePointInTime != nil {
		at = p.RestorePointInTime.UTC()
	}
	earliest := v.json.Properties.EarliestRestoreDate
	if at.Before(earliest) || at.After(v.drop.Deleted) {
		return nil, nil, fault.Invalid("RestorePointInTimeOutOfRange",
			"The restore point in time %s is outside dropped database '%s''s restore window, %s to its deletion at %s; choose a time inside it, or omit it to restore the database as it was when dropped.",
			at.Format(time.RFC3339Nano), name, earliest.Format(time.RFC3339), v.drop.Deleted.Format(time.RFC3339Nano))
	}
	return c.databaseCommand(ctx, m, KindRestoreDatabase, "RestoreManagedDatabase",
		instance.Command{Kind: instance.CmdRestoreDatabase, Database: db, SourceDatabase: name, Time: at,
			DropLSN: v.drop.LSN, Dropped: v.drop.Deleted.UTC()})
}
