package fogclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/fogdb/fog/internal/resource"
)

// Long-term retention's resources.
type (
	LongTermRetentionPolicy = resource.LongTermRetentionPolicyJSON
	// LongTermRetentionBackup is a full backup a database's LTR policy keeps.
	LongTermRetentionBackup = resource.LTRBackupJSON
)

// LongTermRetentionPolicyPath is a database's LTR policy ("" name: its policies; the one
// policy is named "default").
func (c *Client) LongTermRetentionPolicyPath(rg, mi, db, name string) string {
	p := c.DatabasePath(rg, mi, db) + "/backupLongTermRetentionPolicies"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// GetLongTermRetentionPolicy reads a database's LTR policy.
func (c *Client) GetLongTermRetentionPolicy(ctx context.Context, rg, mi, db string) (*LongTermRetentionPolicy, error) {
	return get[LongTermRetentionPolicy](ctx, c, c.LongTermRetentionPolicyPath(rg, mi, db, resource.LongTermRetentionPolicyName))
}

// ListLongTermRetentionPolicies lists a database's LTR policies (the one, default).
func (c *Client) ListLongTermRetentionPolicies(ctx context.Context, rg, mi, db string) ([]LongTermRetentionPolicy, error) {
	return getList[LongTermRetentionPolicy](ctx, c, c.LongTermRetentionPolicyPath(rg, mi, db, ""))
}

// BeginSetLongTermRetentionPolicy sends a database's LTR policy (PUT): ISO 8601 durations
// (P12W, P6M, P5Y; PT0S for none) and the week of the year of the yearly backup.
func (c *Client) BeginSetLongTermRetentionPolicy(ctx context.Context, rg, mi, db string, p resource.LongTermRetentionProperties) (*Operation, error) {
	path := c.LongTermRetentionPolicyPath(rg, mi, db, resource.LongTermRetentionPolicyName)
	return c.Begin(ctx, http.MethodPut, path, LongTermRetentionPolicy{Properties: p}, path)
}

// SetLongTermRetentionPolicy sets a database's LTR policy and returns it when done.
func (c *Client) SetLongTermRetentionPolicy(ctx context.Context, rg, mi, db string, p resource.LongTermRetentionProperties) (*LongTermRetentionPolicy, error) {
	op, err := c.BeginSetLongTermRetentionPolicy(ctx, rg, mi, db, p)
	return waitFor[LongTermRetentionPolicy](ctx, op, err)
}

// LongTermRetentionBackupsPath is Azure's path of LTR backups in a location: of a database
// of an instance (mi and db given), of an instance (mi given), or of the location; under
// resource group rg when given. name, with mi and db, names one backup.
func (c *Client) LongTermRetentionBackupsPath(rg, location, mi, db, name string) string {
	p := "/subscriptions/" + url.PathEscape(c.sub)
	if rg != "" {
		p += "/resourceGroups/" + url.PathEscape(rg)
	}
	p += "/providers/Microsoft.Sql/locations/" + url.PathEscape(location)
	if mi != "" {
		p += "/longTermRetentionManagedInstances/" + url.PathEscape(mi)
		if db != "" {
			p += "/longTermRetentionDatabases/" + url.PathEscape(db)
		}
	}
	p += "/longTermRetentionManagedInstanceBackups"
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// ListLongTermRetentionBackups lists the LTR backups of a location, an instance or a
// database (see LongTermRetentionBackupsPath).
func (c *Client) ListLongTermRetentionBackups(ctx context.Context, rg, location, mi, db string) ([]LongTermRetentionBackup, error) {
	return getList[LongTermRetentionBackup](ctx, c, c.LongTermRetentionBackupsPath(rg, location, mi, db, ""))
}

// GetLongTermRetentionBackup reads one LTR backup, by its id (a path).
func (c *Client) GetLongTermRetentionBackup(ctx context.Context, id string) (*LongTermRetentionBackup, error) {
	return get[LongTermRetentionBackup](ctx, c, id)
}

// BeginDeleteLongTermRetentionBackup deletes one LTR backup, by its id (a path).
func (c *Client) BeginDeleteLongTermRetentionBackup(ctx context.Context, id string) (*Operation, error) {
	return c.Begin(ctx, http.MethodDelete, id, nil, "")
}

// BeginRestoreLongTermRetentionBackup restores LTR backup id as the new database destName
// of instance (destRG, destMI): a database PUT with createMode
// RestoreLongTermRetentionBackup.
func (c *Client) BeginRestoreLongTermRetentionBackup(ctx context.Context, id, destRG, destMI, destName string) (*Operation, error) {
	var db Database
	db.Properties.CreateMode = resource.CreateModeRestoreLTR
	db.Properties.LongTermRetentionBackupResourceID = id
	p := c.DatabasePath(destRG, destMI, destName)
	return c.Begin(ctx, http.MethodPut, p, db, p)
}
