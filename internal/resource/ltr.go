package resource

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fault"
	"github.com/fogdb/fog/internal/ltr"
)

// Long-term retention (LTR, docs/backups.md): a policy per database, and the full backups it
// keeps, listed at Azure's paths under a location.

// ARM types of LTR.
const (
	TypeLongTermRetentionPolicy = "Microsoft.Sql/managedInstances/databases/backupLongTermRetentionPolicies"
	TypeLongTermRetentionBackup = "Microsoft.Sql/locations/longTermRetentionManagedInstances/longTermRetentionDatabases/longTermRetentionManagedInstanceBackups"
)

// LongTermRetentionPolicyName is the name of a database's one LTR policy (Azure's
// ManagedInstanceLongTermRetentionPolicyName enumerates "default" only).
const LongTermRetentionPolicyName = "default"

// LongTermRetentionProperties is the properties block of an LTR policy.
type LongTermRetentionProperties struct {
	WeeklyRetention  string `json:"weeklyRetention"`
	MonthlyRetention string `json:"monthlyRetention"`
	YearlyRetention  string `json:"yearlyRetention"`
	WeekOfYear       int    `json:"weekOfYear"`
}

// LongTermRetentionPolicyJSON is the wire form of a database's LTR policy.
type LongTermRetentionPolicyJSON struct {
	ID         string                      `json:"id,omitempty"`
	Name       string                      `json:"name,omitempty"`
	Type       string                      `json:"type,omitempty"`
	Properties LongTermRetentionProperties `json:"properties"`
}

// LongTermRetention is the stored LTR policy of one database of an instance, keyed by the
// instance's UID and the database's name (LongTermRetentionKey). A database without one keeps
// no LTR backups.
type LongTermRetention struct {
	InstanceUID string `json:"instanceUid"`
	Database    string `json:"database"`
	Weekly      string `json:"weekly"`
	Monthly     string `json:"monthly"`
	Yearly      string `json:"yearly"`
	WeekOfYear  int    `json:"weekOfYear"`
	// UpdatedAt is when it was set: the first full backup that ends after it is the first
	// of its week, month and year for the policy (a policy keeps backups taken under it).
	UpdatedAt time.Time `json:"updatedAt"`
}

// Policy is r as ltr decides with it (r was validated when it was written).
func (r LongTermRetention) Policy() ltr.Policy {
	w, _ := ltr.ParseDuration(r.Weekly)
	m, _ := ltr.ParseDuration(r.Monthly)
	y, _ := ltr.ParseDuration(r.Yearly)
	return ltr.Policy{Weekly: w, Monthly: m, Yearly: y, WeekOfYear: r.WeekOfYear}
}

// LongTermRetentionPrefix is the store prefix of the LTR policies of the instance with uid.
func LongTermRetentionPrefix(uid string) string { return "backupPolicies/long/" + uid + "/" }

// LongTermRetentionKey is the store key of database db's LTR policy in the instance with uid.
func LongTermRetentionKey(uid, db string) string {
	return LongTermRetentionPrefix(uid) + url.PathEscape(db)
}

// LongTermRetentionID is the ARM id of database db's LTR policy.
func LongTermRetentionID(sub, rg, mi, db string) string {
	return arm.DatabaseID(sub, rg, mi, db) + "/backupLongTermRetentionPolicies/" + LongTermRetentionPolicyName
}

// LongTermRetentionView is r's wire form for database db of instance mi (r nil: none set,
// every retention PT0S).
func LongTermRetentionView(sub, rg, mi, db string, r *LongTermRetention) LongTermRetentionPolicyJSON {
	p := LongTermRetentionProperties{WeeklyRetention: "PT0S", MonthlyRetention: "PT0S", YearlyRetention: "PT0S"}
	if r != nil {
		pol := r.Policy()
		p = LongTermRetentionProperties{WeeklyRetention: pol.Weekly.String(), MonthlyRetention: pol.Monthly.String(),
			YearlyRetention: pol.Yearly.String(), WeekOfYear: r.WeekOfYear}
	}
	return LongTermRetentionPolicyJSON{ID: LongTermRetentionID(sub, rg, mi, db), Name: LongTermRetentionPolicyName,
		Type: TypeLongTermRetentionPolicy, Properties: p}
}

// LongTermRetentionBody is a PUT body of an LTR policy as read: weekOfYear is kept raw, so
// that a value that is no whole number is refused with the policy's code.
type LongTermRetentionBody struct {
	Properties struct {
		WeeklyRetention  *string         `json:"weeklyRetention"`
		MonthlyRetention *string         `json:"monthlyRetention"`
		YearlyRetention  *string         `json:"yearlyRetention"`
		WeekOfYear       json.RawMessage `json:"weekOfYear"`
	} `json:"properties"`
}

// Policy validates b: each retention an ISO 8601 duration from one week to ten years (P1W,
// P12W, P6M, P5Y) or PT0S (none, as is one left out), weekOfYear 1 to 52, needed with a
// yearly retention. The code is InvalidParameterValue, as Azure's for a bad policy.
func (b LongTermRetentionBody) Policy(db string) (LongTermRetention, error) {
	r := LongTermRetention{Database: db, Weekly: "PT0S", Monthly: "PT0S", Yearly: "PT0S"}
	for _, f := range []struct {
		name string
		v    *string
		to   *string
	}{{"weeklyRetention", b.Properties.WeeklyRetention, &r.Weekly}, {"monthlyRetention", b.Properties.MonthlyRetention, &r.Monthly},
		{"yearlyRetention", b.Properties.YearlyRetention, &r.Yearly}} {
		if f.v == nil {
			continue
		}
		d, err := ltr.ParseDuration(*f.v)
		if err != nil {
			return r, invalidLTRDuration(f.name, *f.v, err)
		}
		*f.to = d.String()
	}
	raw := bytes.TrimSpace(b.Properties.WeekOfYear)
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		n, err := strconv.ParseInt(string(raw), 10, 32)
		if err != nil || n < 0 || n > 52 {
			return r, fault.Invalid("InvalidParameterValue",
				"properties.weekOfYear %s is not valid: give the week of the year (1 to 52) whose full backup the yearly retention keeps.", clip(string(raw)))
		}
		r.WeekOfYear = int(n)
	}
	if y, _ := ltr.ParseDuration(r.Yearly); !y.Zero() && r.WeekOfYear == 0 {
		return r, fault.Invalid("InvalidParameterValue",
			"properties.yearlyRetention %s needs properties.weekOfYear: the week of the year (1 to 52) whose full backup is kept for it.", r.Yearly)
	}
	return r, nil
}

func invalidLTRDuration(field, v string, err error) error {
	why := "it is not an ISO 8601 duration of whole days, weeks, months or years"
	if errors.Is(err, ltr.ErrRange) {
		why = "a retention is at least one week and at most ten years"
	}
	return fault.Invalid("InvalidParameterValue",
		"properties.%s '%s' is not valid: %s. Give one such as P12W, P6M or P5Y (P520W, P120M and P10Y at most), or PT0S for none.", field, clip(v), why)
}

func clip(v string) string {
	if len(v) > 40 {
		return v[:40] + "..."
	}
	return v
}

// ValidateLongTermRetentionPolicyName checks the policy name of a request: "default" only.
func ValidateLongTermRetentionPolicyName(name string, write bool) error {
	if name == LongTermRetentionPolicyName {
		return nil
	}
	if write {
		return fault.Invalid("InvalidParameterValue",
			"The long-term retention policy name '%s' is invalid: a database has one policy, named 'default'.", name)
	}
	return fault.New(fault.NotFound, "ResourceNotFound",
		"The requested resource of type '%s' with name '%s' was not found. A database has one long-term retention policy, named 'default'.", TypeLongTermRetentionPolicy, name)
}

// LTRBackup is one database's record of a full backup its LTR policy keeps. The record
// outlives the database (a dropped database's LTR backups stay listed until they expire) and
// names its instance by name too, as Azure's paths do.
type LTRBackup struct {
	Subscription    string    `json:"subscription"`
	ResourceGroup   string    `json:"resourceGroup"`
	Location        string    `json:"location"`
	InstanceName    string    `json:"instanceName"`
	InstanceUID     string    `json:"instanceUid"`
	InstanceCreated time.Time `json:"instanceCreated"`
	Database        string    `json:"database"`
	// Label is the pgBackRest backup; BackupTime its end, Expires when LTR lets it go.
	Label      string    `json:"label"`
	BackupTime time.Time `json:"backupTime"`
	Expires    time.Time `json:"expires"`
	Redundancy string    `json:"redundancy"`
	// DatabaseDeleted is when the database was dropped (zero: it is there, or was when last
	// seen).
	DatabaseDeleted time.Time `json:"databaseDeleted,omitzero"`
}

// Name is the backup's ARM name: the instance's UID and the backup's label, as Azure's
// names are a GUID and a number (its ';' included).
func (b LTRBackup) Name() string { return b.InstanceUID + ";" + b.Label }

// LTRBackupPrefix is the store prefix of every LTR backup record.
const LTRBackupPrefix = "ltrBackups/"

// LTRBackupInstancePrefix is the store prefix of the LTR backups of the instance with uid.
func LTRBackupInstancePrefix(uid string) string { return LTRBackupPrefix + uid + "/" }

// LTRBackupKey is the store key of database db's LTR record of backup label.
func LTRBackupKey(uid, db, label string) string {
	return LTRBackupInstancePrefix(uid) + url.PathEscape(db) + "/" + label
}

// LTRCursorKey is the store key of the last full backup of the instance with uid that LTR
// judged (LTRCursor).
func LTRCursorKey(uid string) string { return "ltrCursor/" + uid }

// LTRCursor is, per database, the end of the last full backup its LTR policy judged: the
// next one is the first of its week when that one was not in the same week.
type LTRCursor struct {
	Last map[string]time.Time `json:"last"`
}

// LTRBackupProperties is the properties block of an LTR backup (Azure's
// ManagedInstanceLongTermRetentionBackupProperties).
type LTRBackupProperties struct {
	ManagedInstanceName       string     `json:"managedInstanceName"`
	ManagedInstanceCreateTime time.Time  `json:"managedInstanceCreateTime"`
	DatabaseName              string     `json:"databaseName"`
	DatabaseDeletionTime      *time.Time `json:"databaseDeletionTime,omitempty"`
	BackupTime                time.Time  `json:"backupTime"`
	BackupExpirationTime      time.Time  `json:"backupExpirationTime"`
	BackupStorageRedundancy   string     `json:"backupStorageRedundancy"`
}

// LTRBackupJSON is the wire form of an LTR backup.
type LTRBackupJSON struct {
	ID         string              `json:"id"`
	Name       string              `json:"name"`
	Type       string              `json:"type"`
	Properties LTRBackupProperties `json:"properties"`
}

// LTRBackupID is the ARM id of b, with its resource group when rg is true (Azure answers
// the form it was asked with).
func LTRBackupID(b LTRBackup, rg bool) string {
	base := "/subscriptions/" + b.Subscription
	if rg {
		base += "/resourceGroups/" + b.ResourceGroup
	}
	return base + "/providers/Microsoft.Sql/locations/" + b.Location + "/longTermRetentionManagedInstances/" + b.InstanceName +
		"/longTermRetentionDatabases/" + b.Database + "/longTermRetentionManagedInstanceBackups/" + b.Name()
}

// LTRBackupView is b's wire form; deleted is when its database was dropped (nil: it is
// there).
func LTRBackupView(b LTRBackup, rg bool, deleted *time.Time) LTRBackupJSON {
	return LTRBackupJSON{ID: LTRBackupID(b, rg), Name: b.Name(), Type: TypeLongTermRetentionBackup,
		Properties: LTRBackupProperties{ManagedInstanceName: b.InstanceName, ManagedInstanceCreateTime: b.InstanceCreated.UTC(),
			DatabaseName: b.Database, DatabaseDeletionTime: deleted, BackupTime: b.BackupTime.UTC(),
			BackupExpirationTime: b.Expires.UTC(), BackupStorageRedundancy: b.Redundancy}}
}

// LTRBackupRef is an LTR backup as an id names it.
type LTRBackupRef struct {
	Subscription, ResourceGroup, Location, Instance, Database string
	// InstanceUID and Label are the name's halves.
	InstanceUID, Label string
}

// ParseLTRBackupName splits a backup's name into the instance's UID and the label.
func ParseLTRBackupName(name string) (uid, label string, ok bool) {
	uid, label, ok = strings.Cut(name, ";")
	if !ok || uid == "" || !ltrLabel(label) {
		return "", "", false
	}
	return uid, label, true
}

func ltrLabel(s string) bool {
	// A full backup's pgBackRest label: 20060102-150405F.
	if len(s) != 16 || s[8] != '-' || s[15] != 'F' {
		return false
	}
	for i, c := range s[:15] {
		if i != 8 && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// ParseLTRBackupID reads a longTermRetentionBackupResourceId: Azure's path of an LTR
// backup, with or without its resource group.
func ParseLTRBackupID(id string) (LTRBackupRef, error) {
	seg := strings.Split(strings.Trim(id, "/"), "/")
	var r LTRBackupRef
	want := func(i int, name string) bool { return i < len(seg) && strings.EqualFold(seg[i], name) }
	if !want(0, "subscriptions") || len(seg) < 2 {
		return r, fmt.Errorf("'%s' is not the resource id of a long-term retention backup: want /subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Sql/locations/{location}/longTermRetentionManagedInstances/{instance}/longTermRetentionDatabases/{database}/longTermRetentionManagedInstanceBackups/{backup}", clip(id))
	}
	r.Subscription = seg[1]
	i := 2
	if want(i, "resourceGroups") && i+1 < len(seg) {
		r.ResourceGroup, i = seg[i+1], i+2
	}
	ok := want(i, "providers") && want(i+1, "Microsoft.Sql") && want(i+2, "locations") && want(i+4, "longTermRetentionManagedInstances") &&
		want(i+6, "longTermRetentionDatabases") && want(i+8, "longTermRetentionManagedInstanceBackups") && len(seg) == i+10
	if !ok {
		return LTRBackupRef{}, fmt.Errorf("'%s' is not the resource id of a long-term retention backup: want /subscriptions/{sub}[/resourceGroups/{rg}]/providers/Microsoft.Sql/locations/{location}/longTermRetentionManagedInstances/{instance}/longTermRetentionDatabases/{database}/longTermRetentionManagedInstanceBackups/{backup}", clip(id))
	}
	r.Location, r.Instance, r.Database = seg[i+3], seg[i+5], seg[i+7]
	name, err := url.PathUnescape(seg[i+9])
	if err != nil {
		name = seg[i+9]
	}
	uid, label, ok := ParseLTRBackupName(name)
	if !ok {
		return LTRBackupRef{}, fmt.Errorf("'%s' is not the name of a long-term retention backup: list them with GET .../longTermRetentionManagedInstanceBackups", clip(name))
	}
	r.InstanceUID, r.Label = uid, label
	return r, nil
}
