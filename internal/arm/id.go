package arm

import (
	"fmt"
	"strings"
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
