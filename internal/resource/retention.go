package resource

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
)

// TypeShortTermRetentionPolicy is the ARM type of a database's short-term retention policy.
const TypeShortTermRetentionPolicy = "Microsoft.Sql/managedInstances/databases/backupShortTermRetentionPolicies"

// ShortTermRetentionPolicyName is the name of a database's one short-term retention policy:
// Azure's specification enumerates "default" and nothing else
// (ManagedBackupShortTermRetentionPolicies.json, ManagedShortTermRetentionPolicyName).
const ShortTermRetentionPolicyName = "default"

// Azure's bounds of a database's point-in-time restore window, in days. The message of
// InvalidBackupRetentionPeriod says them ("must be between {1} and {2}").
const (
	MinRetentionDays = 1
	MaxRetentionDays = 35
)

// ShortTermRetentionProperties is the properties block of a short-term retention policy.
type ShortTermRetentionProperties struct {
	// RetentionDays is how many days of point-in-time restore the database keeps.
	RetentionDays *int `json:"retentionDays,omitempty"`
}

// ShortTermRetentionPolicyJSON is the wire form of a database's short-term retention policy
// (a proxy resource: no location, no tags).
type ShortTermRetentionPolicyJSON struct {
	ID         string                       `json:"id,omitempty"`
	Name       string                       `json:"name,omitempty"`
	Type       string                       `json:"type,omitempty"`
	Properties ShortTermRetentionProperties `json:"properties"`
}

// ShortTermRetention is the stored policy of one database of an instance: databases are not
// records of their own (their agent observes them), so the policy is a small record keyed by
// the instance's UID and the database's name (ShortTermRetentionKey). A database without one
// keeps DefaultBackupRetentionDays.
type ShortTermRetention struct {
	InstanceUID   string    `json:"instanceUid"`
	Database      string    `json:"database"`
	RetentionDays int       `json:"retentionDays"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// ShortTermRetentionPrefix is the store prefix of the policies of the instance with uid. It
// is outside "mi/", whose every key is an instance record.
func ShortTermRetentionPrefix(uid string) string { return "backupPolicies/short/" + uid + "/" }

// ShortTermRetentionKey is the store key of database db's policy in the instance with uid.
// The name is escaped: a database made with SQL may have a '/' in its name.
func ShortTermRetentionKey(uid, db string) string {
	return ShortTermRetentionPrefix(uid) + url.PathEscape(db)
}

// ShortTermRetentionView is the policy's wire form for database db of instance mi; days is
// the policy's, or DefaultBackupRetentionDays for a database without one.
func ShortTermRetentionView(sub, rg, mi, db string, days int) ShortTermRetentionPolicyJSON {
	return ShortTermRetentionPolicyJSON{
		ID:   ShortTermRetentionID(sub, rg, mi, db),
		Name: ShortTermRetentionPolicyName, Type: TypeShortTermRetentionPolicy,
		Properties: ShortTermRetentionProperties{RetentionDays: &days},
	}
}

// ShortTermRetentionID is the ARM id of database db's short-term retention policy.
func ShortTermRetentionID(sub, rg, mi, db string) string {
	return arm.DatabaseID(sub, rg, mi, db) + "/backupShortTermRetentionPolicies/" + ShortTermRetentionPolicyName
}

// ShortTermRetentionBody is a PUT or PATCH body of a policy as read: retentionDays is kept
// raw, so that a value that is not a whole number is refused in Azure's words for a bad
// retention (InvalidBackupRetentionPeriod, with the range) rather than as a body that could
// not be decoded.
type ShortTermRetentionBody struct {
	Properties struct {
		RetentionDays json.RawMessage `json:"retentionDays"`
	} `json:"properties"`
}

// RetentionDays is the body's retentionDays, validated: a whole number of days from
// MinRetentionDays to MaxRetentionDays. sent is false when the body has none (or null): a PUT
// must send it, a PATCH keeps the current one.
func (b ShortTermRetentionBody) RetentionDays() (days int, sent bool, err error) {
	raw := bytes.TrimSpace(b.Properties.RetentionDays)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, false, nil
	}
	n, perr := strconv.ParseInt(string(raw), 10, 32)
	if perr != nil || n < MinRetentionDays || n > MaxRetentionDays {
		return 0, true, invalidRetention(string(raw))
	}
	return int(n), true, nil
}

// MissingRetentionDays is the error of a PUT whose body has no properties.retentionDays.
func MissingRetentionDays() error {
	return fault.Invalid("InvalidBackupRetentionPeriod",
		"properties.retentionDays is required: give the days of point-in-time restore to keep, a whole number between %d and %d.", MinRetentionDays, MaxRetentionDays)
}

// invalidRetention is Azure's answer to a retention out of range
// (ManagedBackupShortTermRetentionPolicies_CreateOrUpdate's error list: "400
// InvalidBackupRetentionPeriod - The retention days of {0} is not a valid configuration.
// Valid backup retention in days must be between {1} and {2}"). Fog answers the same for a
// value that is not a whole number.
func invalidRetention(v string) error {
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return fault.Invalid("InvalidBackupRetentionPeriod",
		"The retention days of %s is not a valid configuration. Valid backup retention in days must be between %d and %d.", v, MinRetentionDays, MaxRetentionDays)
}

// ValidateShortTermRetentionPolicyName checks the policy name of a request: "default", the
// only one Azure has. A read of another is a 404 (nothing is there), a write a 400.
func ValidateShortTermRetentionPolicyName(name string, write bool) error {
	if name == ShortTermRetentionPolicyName {
		return nil
	}
	if write {
		return fault.Invalid("InvalidParameterValue",
			"The short-term retention policy name '%s' is invalid: a database has one policy, named 'default'.", name)
	}
	return fault.New(fault.NotFound, "ResourceNotFound",
		"The requested resource of type '%s' with name '%s' was not found. A database has one short-term retention policy, named 'default'.", TypeShortTermRetentionPolicy, name)
}

// InstanceRetentionDays is the retention an instance's backups keep: pgBackRest backs up and
// expires a whole PostgreSQL cluster (one stanza), never one database, so the cluster keeps
// the longest window any of its databases asks for. dbs are the instance's user databases;
// policies the days of those that have a policy, the others keeping Azure's default. An
// instance without databases keeps the default.
func InstanceRetentionDays(dbs []string, policies map[string]int) int {
	if len(dbs) == 0 {
		return DefaultBackupRetentionDays
	}
	longest := MinRetentionDays
	for _, db := range dbs {
		days, ok := policies[db]
		if !ok {
			days = DefaultBackupRetentionDays
		}
		longest = max(longest, days)
	}
	return longest
}
