package arm

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ProviderSQL is the resource provider namespace Fog serves.
const ProviderSQL = "Microsoft.Sql"

// InstanceID is the ARM id of a managed instance.
func InstanceID(sub, rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/managedInstances/%s", sub, rg, ProviderSQL, name)
}

// DatabaseID is the ARM id of a database of a managed instance.
func DatabaseID(sub, rg, mi, db string) string {
	return InstanceID(sub, rg, mi) + "/databases/" + db
}

// ParsedInstanceID is a managed-instance id taken apart.
type ParsedInstanceID struct {
	Subscription, ResourceGroup, Name string
}

// ParseInstanceID parses "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{n}".
// Segment names compare case-insensitively, as ARM does.
func ParseInstanceID(id string) (ParsedInstanceID, error) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	if len(parts) != 8 ||
		!strings.EqualFold(parts[0], "subscriptions") ||
		!strings.EqualFold(parts[2], "resourceGroups") ||
		!strings.EqualFold(parts[4], "providers") ||
		!strings.EqualFold(parts[5], ProviderSQL) ||
		!strings.EqualFold(parts[6], "managedInstances") ||
		parts[1] == "" || parts[3] == "" || parts[7] == "" {
		return ParsedInstanceID{}, fmt.Errorf("%q is not a managed instance resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{name})", id)
	}
	return ParsedInstanceID{Subscription: parts[1], ResourceGroup: parts[3], Name: parts[7]}, nil
}

// ParseDatabaseID parses the id of a database of a managed instance (DatabaseID): the
// instance's id and the database's name.
func ParseDatabaseID(id string) (ParsedInstanceID, string, error) {
	i := strings.LastIndex(strings.TrimRight(id, "/"), "/")
	if i < 0 {
		return ParsedInstanceID{}, "", fmt.Errorf("%q is not a managed database resource id", id)
	}
	inst, rest := id[:i], strings.TrimRight(id[i+1:], "/")
	j := strings.LastIndex(inst, "/")
	if j < 0 || !strings.EqualFold(inst[j+1:], "databases") || rest == "" {
		return ParsedInstanceID{}, "", fmt.Errorf("%q is not a managed database resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}/databases/{db})", id)
	}
	p, err := ParseInstanceID(inst[:j])
	if err != nil {
		return ParsedInstanceID{}, "", fmt.Errorf("%q is not a managed database resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}/databases/{db})", id)
	}
	return p, rest, nil
}

// fileTimeEpoch is 1601-01-01 UTC in Unix seconds: Windows file times, which Azure's ids of
// restorable dropped databases carry (the az CLI's _to_filetimeutc), count 100 ns from it.
const fileTimeEpoch = -11644473600

// FileTime is t as a Windows file time: 100 ns units since 1601-01-01 UTC.
func FileTime(t time.Time) int64 {
	return (t.Unix()-fileTimeEpoch)*10_000_000 + int64(t.Nanosecond()/100)
}

// RestorableDroppedDatabaseName is the name of a dropped database's restorable resource:
// "<name>,<deletion time as a file time>", as Azure names it.
func RestorableDroppedDatabaseName(db string, deleted time.Time) string {
	return fmt.Sprintf("%s,%d", db, FileTime(deleted))
}

// RestorableDroppedDatabaseID is the ARM id of a dropped database that instance mi can
// restore.
func RestorableDroppedDatabaseID(sub, rg, mi, db string, deleted time.Time) string {
	return InstanceID(sub, rg, mi) + "/restorableDroppedDatabases/" + RestorableDroppedDatabaseName(db, deleted)
}

// ParseRestorableDroppedDatabaseName takes a restorable dropped database's name apart: the
// database's name and its deletion time as a file time.
func ParseRestorableDroppedDatabaseName(name string) (db string, deleted int64, err error) {
	i := strings.LastIndex(name, ",")
	if i <= 0 {
		return "", 0, fmt.Errorf("%q is not a restorable dropped database's name (<database>,<deletion time in 100 ns units since 1601>)", name)
	}
	deleted, err = strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil || deleted <= 0 {
		return "", 0, fmt.Errorf("%q is not a restorable dropped database's name (<database>,<deletion time in 100 ns units since 1601>)", name)
	}
	return name[:i], deleted, nil
}

// ParseRestorableDroppedDatabaseID parses RestorableDroppedDatabaseID's ids; the name may be
// escaped, as the az CLI sends it.
func ParseRestorableDroppedDatabaseID(id string) (ParsedInstanceID, string, int64, error) {
	bad := fmt.Errorf("%q is not a restorable dropped database's resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}/restorableDroppedDatabases/{database},{deletion time})", id)
	i := strings.LastIndex(strings.TrimRight(id, "/"), "/")
	if i < 0 {
		return ParsedInstanceID{}, "", 0, bad
	}
	inst, rest := id[:i], strings.TrimRight(id[i+1:], "/")
	j := strings.LastIndex(inst, "/")
	if j < 0 || !strings.EqualFold(inst[j+1:], "restorableDroppedDatabases") {
		return ParsedInstanceID{}, "", 0, bad
	}
	p, err := ParseInstanceID(inst[:j])
	if err != nil {
		return ParsedInstanceID{}, "", 0, bad
	}
	if u, err := url.PathUnescape(rest); err == nil {
		rest = u
	}
	db, deleted, err := ParseRestorableDroppedDatabaseName(rest)
	if err != nil {
		return ParsedInstanceID{}, "", 0, bad
	}
	return p, db, deleted, nil
}

// RecoverableDatabaseID is the ARM id of a database of instance mi that a geo-restore can
// recover from the copy of its backups in its partner region (Azure's recoverableDatabases).
func RecoverableDatabaseID(sub, rg, mi, db string) string {
	return InstanceID(sub, rg, mi) + "/recoverableDatabases/" + db
}

// ParseRecoverableDatabaseID parses RecoverableDatabaseID's ids; the name may be escaped, as
// the az CLI sends it.
func ParseRecoverableDatabaseID(id string) (ParsedInstanceID, string, error) {
	bad := fmt.Errorf("%q is not a recoverable database's resource id (/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/managedInstances/{mi}/recoverableDatabases/{database})", id)
	id = strings.TrimRight(id, "/")
	i := strings.LastIndex(id, "/")
	if i < 0 {
		return ParsedInstanceID{}, "", bad
	}
	inst, db := id[:i], id[i+1:]
	j := strings.LastIndex(inst, "/")
	if j < 0 || !strings.EqualFold(inst[j+1:], "recoverableDatabases") || db == "" {
		return ParsedInstanceID{}, "", bad
	}
	p, err := ParseInstanceID(inst[:j])
	if err != nil {
		return ParsedInstanceID{}, "", bad
	}
	if u, err := url.PathUnescape(db); err == nil {
		db = u
	}
	return p, db, nil
}
