package api

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/resource"
)

// ActivityLogAPIVersions are the Microsoft.Insights api-versions of the activity log.
var ActivityLogAPIVersions = arm.APIVersions{"2015-04-01", "2017-03-01-preview"}

const activityPath = "/subscriptions/{sub}/providers/Microsoft.Insights/eventtypes/management/values"

// operationNames are Azure's action strings and display names of Fog's operations.
var operationNames = map[string][2]string{
	controller.KindPutInstance:    {"Microsoft.Sql/managedInstances/write", "Create/Update Managed Instance"},
	controller.KindDeleteInstance: {"Microsoft.Sql/managedInstances/delete", "Delete Managed Instance"},
	controller.KindPutDatabase:    {"Microsoft.Sql/managedInstances/databases/write", "Create/Update Managed Database"},
	controller.KindDeleteDatabase: {"Microsoft.Sql/managedInstances/databases/delete", "Delete Managed Database"},
	// A restore is a database PUT in Azure (createMode PointInTimeRestore).
	controller.KindRestoreDatabase: {"Microsoft.Sql/managedInstances/databases/write", "Create/Update Managed Database"},
	controller.KindPutRetention:    {"Microsoft.Sql/managedInstances/databases/backupShortTermRetentionPolicies/write", "Create/Update Managed Database Short Term Retention Policy"},
	controller.KindPutLTR:          {"Microsoft.Sql/managedInstances/databases/backupLongTermRetentionPolicies/write", "Create/Update Managed Database Long Term Retention Policy"},
	controller.KindDeleteLTRBackup: {"Microsoft.Sql/locations/longTermRetentionManagedInstances/longTermRetentionDatabases/longTermRetentionManagedInstanceBackups/delete", "Delete Long Term Retention Managed Instance Backup"},
	controller.KindCreateGroup:     {"Microsoft.Sql/locations/instanceFailoverGroups/write", "Create/Update Instance Failover Group"},
	controller.KindUpdateGroup:     {"Microsoft.Sql/locations/instanceFailoverGroups/write", "Create/Update Instance Failover Group"},
	controller.KindDeleteGroup:     {"Microsoft.Sql/locations/instanceFailoverGroups/delete", "Delete Instance Failover Group"},
	controller.KindFailover:        {"Microsoft.Sql/locations/instanceFailoverGroups/failover/action", "Failover Azure SQL failover group"},
	controller.KindForceFailover:   {"Microsoft.Sql/locations/instanceFailoverGroups/forceFailoverAllowDataLoss/action", "Failover Azure SQL failover group (allow data loss)"},
	// Azure logs no automated backup; Fog does, under an action of its own.
	controller.KindBackup: {"Microsoft.Sql/managedInstances/backups/action", "Automated backup of Managed Instance"},
}

var clauseRe = regexp.MustCompile(`(?i)^\s*(eventTimestamp|resourceGroupName|resourceId|resourceUri|correlationId|resourceProvider)\s+(ge|le|eq)\s+'([^']*)'\s*$`)

// parseActivityFilter reads the activity log's $filter: eventTimestamp ge '...' (required),
// optionally eventTimestamp le '...', and equality on resourceGroupName, resourceId (or
// resourceUri), correlationId (an operation id) or resourceProvider.
func parseActivityFilter(q string) (controller.ActivityFilter, *arm.Error) {
	var f controller.ActivityFilter
	bad := func(format string, args ...any) *arm.Error {
		return arm.BadRequest("InvalidFilter", "The $filter is invalid: "+format+" Example: $filter=eventTimestamp ge '2026-11-20T00:00:00Z' and eventTimestamp le '2026-11-27T00:00:00Z' and resourceGroupName eq 'rg1'.", args...)
	}
	if strings.TrimSpace(q) == "" {
		return f, bad("it is required and must name a start time with eventTimestamp ge.")
	}
	for _, clause := range regexp.MustCompile(`(?i)\s+and\s+`).Split(q, -1) {
		m := clauseRe.FindStringSubmatch(clause)
		if m == nil {
			return f, bad("%q is not a supported condition (eventTimestamp ge/le, resourceGroupName, resourceId, resourceUri, correlationId or resourceProvider eq, joined by and).", strings.TrimSpace(clause))
		}
		field, op, v := strings.ToLower(m[1]), strings.ToLower(m[2]), m[3]
		switch {
		case field == "eventtimestamp" && op != "eq":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return f, bad("%q is not a time in RFC 3339 form.", v)
			}
			if op == "ge" {
				f.From = t
			} else {
				f.To = t
			}
		case field == "eventtimestamp" || op != "eq":
			return f, bad("%s takes %s, not %s.", m[1], map[bool]string{true: "ge and le", false: "eq"}[field == "eventtimestamp"], op)
		case field == "resourcegroupname":
			f.ResourceGroup = v
		case field == "resourceid" || field == "resourceuri":
			f.ResourceID = v
		case field == "correlationid":
			f.OperationID = v
		case field == "resourceprovider":
			if !strings.EqualFold(v, "Microsoft.Sql") {
				f.OperationID = "-" // no Fog operation is another provider's
			}
		}
	}
	if f.From.IsZero() {
		return f, bad("it must name a start time with eventTimestamp ge.")
	}
	if !f.To.IsZero() && f.To.Before(f.From) {
		return f, bad("the end time is before the start time.")
	}
	return f, nil
}

func localized(v, l string) map[string]string {
	return map[string]string{"value": v, "localizedValue": l}
}

func (s *Server) activityLog(w http.ResponseWriter, r *http.Request) {
	if _, aerr := ActivityLogAPIVersions.Check(r); aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	f, aerr := parseActivityFilter(r.URL.Query().Get("$filter"))
	if aerr != nil {
		arm.WriteError(w, aerr)
		return
	}
	sub := r.PathValue("sub")
	evs, err := s.c.ActivityLog(r.Context(), sub, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(evs))
	for _, e := range evs {
		name := operationNames[e.Kind]
		level, status := "Informational", e.Phase
		if e.Phase == arm.StatusFailed {
			level = "Error"
		}
		props := map[string]any{"initiator": e.Caller}
		if e.Error != nil {
			props["statusMessage"] = fmt.Sprintf("(%s) %s", e.Error.Code, e.Error.Message)
		}
		if e.LostWAL != nil {
			props["lostWal"] = e.LostWAL
		}
		if e.Backup != nil {
			props["backup"] = e.Backup
		}
		if e.Description != "" && e.Phase != "Started" {
			props["description"] = e.Description
		}
		if e.End != nil && e.Phase != "Started" {
			props["durationMs"] = e.End.Sub(e.Start).Milliseconds()
		}
		eventID := e.OperationID + map[bool]string{true: "-start", false: "-end"}[e.Phase == "Started"]
		resourceType := "Microsoft.Sql/managedInstances"
		switch {
		case strings.Contains(e.ResourceID, "/instanceFailoverGroups/"):
			resourceType = "Microsoft.Sql/locations/instanceFailoverGroups"
		case strings.Contains(e.ResourceID, "/backupShortTermRetentionPolicies/"):
			resourceType = resource.TypeShortTermRetentionPolicy
		case strings.Contains(e.ResourceID, "/backupLongTermRetentionPolicies/"):
			resourceType = resource.TypeLongTermRetentionPolicy
		case strings.Contains(e.ResourceID, "/longTermRetentionManagedInstanceBackups/"):
			resourceType = resource.TypeLongTermRetentionBackup
		case strings.Contains(e.ResourceID, "/databases/"):
			resourceType = "Microsoft.Sql/managedInstances/databases"
		}
		out = append(out, map[string]any{
			"authorization":        map[string]string{"action": name[0], "scope": e.ResourceID},
			"caller":               e.Caller,
			"channels":             "Operation",
			"correlationId":        e.OperationID,
			"eventDataId":          eventID,
			"eventName":            localized(map[bool]string{true: "BeginRequest", false: "EndRequest"}[e.Phase == "Started"], map[bool]string{true: "Begin request", false: "End request"}[e.Phase == "Started"]),
			"category":             localized("Administrative", "Administrative"),
			"eventTimestamp":       e.Time.UTC().Format(time.RFC3339Nano),
			"submissionTimestamp":  e.Time.UTC().Format(time.RFC3339Nano),
			"id":                   e.ResourceID + "/events/" + eventID,
			"level":                level,
			"operationId":          e.OperationID,
			"operationName":        localized(name[0], name[1]),
			"resourceGroupName":    e.ResourceGroup,
			"resourceProviderName": localized("Microsoft.Sql", "Microsoft SQL"),
			"resourceType":         localized(resourceType, resourceType),
			"resourceId":           e.ResourceID,
			"status":               localized(status, status),
			"subStatus":            localized("", ""),
			"subscriptionId":       sub,
			"properties":           props,
		})
	}
	arm.WriteJSON(w, http.StatusOK, map[string]any{"value": out})
}
