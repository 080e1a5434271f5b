package fogclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
)

// The ARM resources, in the JSON the API reads and writes.
type (
	ManagedInstance          = resource.InstanceJSON
	Database                 = resource.DatabaseJSON
	FailoverGroup            = resource.FailoverGroupJSON
	ShortTermRetentionPolicy = resource.ShortTermRetentionPolicyJSON
	// RestorableDroppedDatabase is a database dropped from an instance that its backups can
	// restore.
	RestorableDroppedDatabase = resource.RestorableDroppedDatabaseJSON
	RecoverableDatabase       = resource.RecoverableDatabaseJSON
)

// list is an ARM list answer.
type list[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// getList reads every page of a list.
func getList[T any](ctx context.Context, c *Client, path string) ([]T, error) {
	out := []T{}
	for path != "" {
		var page list[T]
		if _, err := c.Do(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Value...)
		path = page.NextLink
	}
	return out, nil
}

func get[T any](ctx context.Context, c *Client, path string) (*T, error) {
	var v T
	if _, err := c.Do(ctx, http.MethodGet, path, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// waitFor follows op to its end and decodes the resource it ends with.
func waitFor[T any](ctx context.Context, op *Operation, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	resp, err := op.Wait(ctx, nil)
	if err != nil || resp == nil || len(resp.Body) == 0 {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(resp.Body, &v); err != nil {
		return nil, fmt.Errorf("decode the operation's result: %w", err)
	}
	return &v, nil
}

func waitDone(ctx context.Context, op *Operation, err error) error {
	if err != nil {
		return err
	}
	_, err = op.Wait(ctx, nil)
	return err
}

// InstancesPath is the managed instances of resource group rg ("" for the subscription's).
func (c *Client) InstancesPath(rg string) string {
	p := "/subscriptions/" + url.PathEscape(c.sub)
	if rg != "" {
		p += "/resourceGroups/" + url.PathEscape(rg)
	}
	return p + "/providers/Microsoft.Sql/managedInstances"
}

// InstancePath is a managed instance's id.
func (c *Client) InstancePath(rg, name string) string {
	return c.InstancesPath(rg) + "/" + url.PathEscape(name)
}

// DatabasePath is a database's id ("" name: the instance's databases).
func (c *Client) DatabasePath(rg, mi, name string) string {
	p := c.InstancePath(rg, mi) + "/databases"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// GroupPath is a failover group's id as the side in (rg, location) addresses it ("" name:
// the groups of that side).
func (c *Client) GroupPath(rg, location, name string) string {
	p := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups",
		url.PathEscape(c.sub), url.PathEscape(rg), url.PathEscape(location))
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// GetManagedInstance reads a managed instance.
func (c *Client) GetManagedInstance(ctx context.Context, rg, name string) (*ManagedInstance, error) {
	return get[ManagedInstance](ctx, c, c.InstancePath(rg, name))
}

// ListManagedInstances lists the instances of resource group rg ("" for the subscription).
func (c *Client) ListManagedInstances(ctx context.Context, rg string) ([]ManagedInstance, error) {
	return getList[ManagedInstance](ctx, c, c.InstancesPath(rg))
}

// instanceBody sends a non-nil empty Tags as {}: the API keeps the tags of a body that names
// none, and InstanceJSON's omitempty would drop an empty map that means "no tags".
type instanceBody struct {
	ManagedInstance
	Tags *map[string]string `json:"tags,omitempty"`
}

func bodyOf(mi ManagedInstance) instanceBody {
	b := instanceBody{ManagedInstance: mi}
	if mi.Tags != nil {
		b.Tags = &mi.Tags
	}
	return b
}

// BeginCreateOrUpdateManagedInstance sends a managed instance's PUT.
func (c *Client) BeginCreateOrUpdateManagedInstance(ctx context.Context, rg, name string, mi ManagedInstance) (*Operation, error) {
	p := c.InstancePath(rg, name)
	return c.Begin(ctx, http.MethodPut, p, bodyOf(mi), p)
}

// CreateOrUpdateManagedInstance creates or updates a managed instance and waits until it is done.
func (c *Client) CreateOrUpdateManagedInstance(ctx context.Context, rg, name string, mi ManagedInstance) (*ManagedInstance, error) {
	op, err := c.BeginCreateOrUpdateManagedInstance(ctx, rg, name, mi)
	return waitFor[ManagedInstance](ctx, op, err)
}

// BeginDeleteManagedInstance deletes a managed instance and all its data.
func (c *Client) BeginDeleteManagedInstance(ctx context.Context, rg, name string) (*Operation, error) {
	return c.Begin(ctx, http.MethodDelete, c.InstancePath(rg, name), nil, "")
}

// DeleteManagedInstance deletes a managed instance and waits until it is gone.
func (c *Client) DeleteManagedInstance(ctx context.Context, rg, name string) error {
	op, err := c.BeginDeleteManagedInstance(ctx, rg, name)
	return waitDone(ctx, op, err)
}

// GetDatabase reads a database of an instance.
func (c *Client) GetDatabase(ctx context.Context, rg, mi, name string) (*Database, error) {
	return get[Database](ctx, c, c.DatabasePath(rg, mi, name))
}

// ListDatabases lists the user databases of an instance.
func (c *Client) ListDatabases(ctx context.Context, rg, mi string) ([]Database, error) {
	return getList[Database](ctx, c, c.DatabasePath(rg, mi, ""))
}

// BeginCreateDatabase sends a database's PUT.
func (c *Client) BeginCreateDatabase(ctx context.Context, rg, mi, name string, db Database) (*Operation, error) {
	p := c.DatabasePath(rg, mi, name)
	return c.Begin(ctx, http.MethodPut, p, db, p)
}

// CreateDatabase creates a database and waits until it is done.
func (c *Client) CreateDatabase(ctx context.Context, rg, mi, name string, db Database) (*Database, error) {
	op, err := c.BeginCreateDatabase(ctx, rg, mi, name, db)
	return waitFor[Database](ctx, op, err)
}

// BeginRestoreDatabase restores database source of instance (rg, mi) as it was at time at, as
// the new database destName of instance (destRG, destMI): a database PUT with createMode
// PointInTimeRestore.
func (c *Client) BeginRestoreDatabase(ctx context.Context, rg, mi, source string, at time.Time, destRG, destMI, destName string) (*Operation, error) {
	t := at.UTC()
	var db Database
	db.Properties.CreateMode = resource.CreateModePointInTimeRestore
	db.Properties.SourceDatabaseID = c.DatabasePath(rg, mi, source)
	db.Properties.RestorePointInTime = &t
	p := c.DatabasePath(destRG, destMI, destName)
	return c.Begin(ctx, http.MethodPut, p, db, p)
}

// RestoreDatabase restores a database to a point in time and waits until it is done.
func (c *Client) RestoreDatabase(ctx context.Context, rg, mi, source string, at time.Time, destRG, destMI, destName string) (*Database, error) {
	op, err := c.BeginRestoreDatabase(ctx, rg, mi, source, at, destRG, destMI, destName)
	return waitFor[Database](ctx, op, err)
}

// RestorableDroppedDatabasePath is an instance's restorable dropped database name ("<db>,<file
// time>"; "": the list of them).
func (c *Client) RestorableDroppedDatabasePath(rg, mi, name string) string {
	p := c.InstancePath(rg, mi) + "/restorableDroppedDatabases"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// ListRestorableDroppedDatabases lists the databases dropped from an instance that its
// backups can restore.
func (c *Client) ListRestorableDroppedDatabases(ctx context.Context, rg, mi string) ([]RestorableDroppedDatabase, error) {
	return getList[RestorableDroppedDatabase](ctx, c, c.RestorableDroppedDatabasePath(rg, mi, ""))
}

// GetRestorableDroppedDatabase returns one by its name.
func (c *Client) GetRestorableDroppedDatabase(ctx context.Context, rg, mi, name string) (*RestorableDroppedDatabase, error) {
	return get[RestorableDroppedDatabase](ctx, c, c.RestorableDroppedDatabasePath(rg, mi, name))
}

// BeginRestoreDroppedDatabase restores database source of instance (rg, mi), dropped at
// deleted, as the new database destName of instance (destRG, destMI): as it was when dropped,
// or at *at. The dropped database is named as the az CLI names it (--deleted-time): its name
// and the deletion time as a file time.
func (c *Client) BeginRestoreDroppedDatabase(ctx context.Context, rg, mi, source string, deleted time.Time, at *time.Time, destRG, destMI, destName string) (*Operation, error) {
	var db Database
	db.Properties.CreateMode = resource.CreateModePointInTimeRestore
	db.Properties.RestorableDroppedDatabaseID = c.RestorableDroppedDatabasePath(rg, mi, arm.RestorableDroppedDatabaseName(source, deleted))
	if at != nil {
		t := at.UTC()
		db.Properties.RestorePointInTime = &t
	}
	p := c.DatabasePath(destRG, destMI, destName)
	return c.Begin(ctx, http.MethodPut, p, db, p)
}

// RecoverableDatabasePath is an instance's database that a geo-restore can recover (""
// : the list of them).
func (c *Client) RecoverableDatabasePath(rg, mi, name string) string {
	p := c.InstancePath(rg, mi) + "/recoverableDatabases"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// ListRecoverableDatabases lists the databases of an instance that a geo-restore can recover
// from the copy of its backups in its partner region.
func (c *Client) ListRecoverableDatabases(ctx context.Context, rg, mi string) ([]RecoverableDatabase, error) {
	return getList[RecoverableDatabase](ctx, c, c.RecoverableDatabasePath(rg, mi, ""))
}

// GetRecoverableDatabase returns one of them.
func (c *Client) GetRecoverableDatabase(ctx context.Context, rg, mi, name string) (*RecoverableDatabase, error) {
	return get[RecoverableDatabase](ctx, c, c.RecoverableDatabasePath(rg, mi, name))
}

// BeginRecoverDatabase geo-restores the database recoverableID names (a recoverableDatabases
// id, of an instance of any region) as the new database destName of instance (destRG,
// destMI): a database PUT with createMode Recovery.
func (c *Client) BeginRecoverDatabase(ctx context.Context, recoverableID, destRG, destMI, destName string) (*Operation, error) {
	var db Database
	db.Properties.CreateMode = resource.CreateModeRecovery
	db.Properties.RecoverableDatabaseID = recoverableID
	p := c.DatabasePath(destRG, destMI, destName)
	return c.Begin(ctx, http.MethodPut, p, db, p)
}

// BeginDeleteDatabase deletes a database.
func (c *Client) BeginDeleteDatabase(ctx context.Context, rg, mi, name string) (*Operation, error) {
	return c.Begin(ctx, http.MethodDelete, c.DatabasePath(rg, mi, name), nil, "")
}

// DeleteDatabase deletes a database and waits until it is gone.
func (c *Client) DeleteDatabase(ctx context.Context, rg, mi, name string) error {
	op, err := c.BeginDeleteDatabase(ctx, rg, mi, name)
	return waitDone(ctx, op, err)
}

// ShortTermRetentionPath is a database's short-term retention policy ("" name: its
// policies; the one policy is named "default").
func (c *Client) ShortTermRetentionPath(rg, mi, db, name string) string {
	p := c.DatabasePath(rg, mi, db) + "/backupShortTermRetentionPolicies"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// GetShortTermRetentionPolicy reads a database's short-term retention policy: the days of
// point-in-time restore it keeps (7 until one is set).
func (c *Client) GetShortTermRetentionPolicy(ctx context.Context, rg, mi, db string) (*ShortTermRetentionPolicy, error) {
	return get[ShortTermRetentionPolicy](ctx, c, c.ShortTermRetentionPath(rg, mi, db, resource.ShortTermRetentionPolicyName))
}

// ListShortTermRetentionPolicies lists a database's short-term retention policies (the one,
// "default").
func (c *Client) ListShortTermRetentionPolicies(ctx context.Context, rg, mi, db string) ([]ShortTermRetentionPolicy, error) {
	return getList[ShortTermRetentionPolicy](ctx, c, c.ShortTermRetentionPath(rg, mi, db, ""))
}

// BeginSetShortTermRetentionPolicy sends a database's short-term retention policy (PUT):
// retentionDays from 1 to 35.
func (c *Client) BeginSetShortTermRetentionPolicy(ctx context.Context, rg, mi, db string, retentionDays int) (*Operation, error) {
	p := c.ShortTermRetentionPath(rg, mi, db, resource.ShortTermRetentionPolicyName)
	body := ShortTermRetentionPolicy{Properties: resource.ShortTermRetentionProperties{RetentionDays: &retentionDays}}
	return c.Begin(ctx, http.MethodPut, p, body, p)
}

// SetShortTermRetentionPolicy sets a database's short-term retention policy and returns it
// when the operation is done.
func (c *Client) SetShortTermRetentionPolicy(ctx context.Context, rg, mi, db string, retentionDays int) (*ShortTermRetentionPolicy, error) {
	op, err := c.BeginSetShortTermRetentionPolicy(ctx, rg, mi, db, retentionDays)
	return waitFor[ShortTermRetentionPolicy](ctx, op, err)
}

// GetFailoverGroup reads a failover group as the side in (rg, location) reports it.
func (c *Client) GetFailoverGroup(ctx context.Context, rg, location, name string) (*FailoverGroup, error) {
	return get[FailoverGroup](ctx, c, c.GroupPath(rg, location, name))
}

// ListFailoverGroups lists the failover groups of the side in (rg, location).
func (c *Client) ListFailoverGroups(ctx context.Context, rg, location string) ([]FailoverGroup, error) {
	return getList[FailoverGroup](ctx, c, c.GroupPath(rg, location, ""))
}

// BeginCreateOrUpdateFailoverGroup sends a failover group's PUT (a create seeds the
// secondary).
func (c *Client) BeginCreateOrUpdateFailoverGroup(ctx context.Context, rg, location, name string, g FailoverGroup) (*Operation, error) {
	p := c.GroupPath(rg, location, name)
	return c.Begin(ctx, http.MethodPut, p, g, p)
}

// CreateOrUpdateFailoverGroup creates or updates a failover group and waits until it is done.
func (c *Client) CreateOrUpdateFailoverGroup(ctx context.Context, rg, location, name string, g FailoverGroup) (*FailoverGroup, error) {
	op, err := c.BeginCreateOrUpdateFailoverGroup(ctx, rg, location, name, g)
	return waitFor[FailoverGroup](ctx, op, err)
}

// BeginDeleteFailoverGroup deletes a failover group (on its primary's side).
func (c *Client) BeginDeleteFailoverGroup(ctx context.Context, rg, location, name string) (*Operation, error) {
	return c.Begin(ctx, http.MethodDelete, c.GroupPath(rg, location, name), nil, "")
}

// DeleteFailoverGroup deletes a failover group and waits until it is gone.
func (c *Client) DeleteFailoverGroup(ctx context.Context, rg, location, name string) error {
	op, err := c.BeginDeleteFailoverGroup(ctx, rg, location, name)
	return waitDone(ctx, op, err)
}

// BeginFailover starts a planned failover to the side in (rg, location), the secondary.
func (c *Client) BeginFailover(ctx context.Context, rg, location, name string) (*Operation, error) {
	return c.Begin(ctx, http.MethodPost, c.GroupPath(rg, location, name)+"/failover", nil, "")
}

// Failover fails over to the side in (rg, location) and returns the group when it is done.
func (c *Client) Failover(ctx context.Context, rg, location, name string) (*FailoverGroup, error) {
	op, err := c.BeginFailover(ctx, rg, location, name)
	return waitFor[FailoverGroup](ctx, op, err)
}

// BeginForceFailoverAllowDataLoss starts a forced failover to the side in (rg, location):
// it does not wait for the primary, and transactions it has not sent are lost.
func (c *Client) BeginForceFailoverAllowDataLoss(ctx context.Context, rg, location, name string) (*Operation, error) {
	return c.Begin(ctx, http.MethodPost, c.GroupPath(rg, location, name)+"/forceFailoverAllowDataLoss", nil, "")
}

// ForceFailoverAllowDataLoss forces a failover and returns the group when it is done.
func (c *Client) ForceFailoverAllowDataLoss(ctx context.Context, rg, location, name string) (*FailoverGroup, error) {
	op, err := c.BeginForceFailoverAllowDataLoss(ctx, rg, location, name)
	return waitFor[FailoverGroup](ctx, op, err)
}
