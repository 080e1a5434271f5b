package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func activityPath(filter string) string {
	return "/subscriptions/" + sub + "/providers/Microsoft.Insights/eventtypes/management/values?api-version=2015-04-01&$filter=" + url.QueryEscape(filter)
}

// activity lists the activity log events matching filter.
func activity(t *testing.T, f *fog, filter string) []map[string]any {
	t.Helper()
	r := f.call("GET", activityPath(filter), nil)
	if r.Status != http.StatusOK {
		t.Fatalf("activity log = %d %s", r.Status, r.Body)
	}
	var out []map[string]any
	for _, v := range r.json(t)["value"].([]any) {
		out = append(out, v.(map[string]any))
	}
	return out
}

// TestActivityLog: every operation appears as a begin and an end event in the shape of
// Azure's activity log, with the token's identity as caller, Azure's action strings, its
// outcome and duration; $filter selects by time and resource group and is validated; the
// CLI lists the same as az monitor activity-log list does.
func TestActivityLog(t *testing.T) {
	f := startFog(t, "")
	since := time.Now().UTC().Add(-time.Second)
	p := newPair(t, f, "al")
	p.create(t, nil)
	p.failover(t, false)
	filter := "eventTimestamp ge '" + since.Format(time.RFC3339Nano) + "'"
	evs := activity(t, f, filter+" and resourceGroupName eq 'rg-s'")
	var begin, end map[string]any
	for _, e := range evs {
		if e["operationName"].(map[string]any)["value"] != "Microsoft.Sql/locations/instanceFailoverGroups/failover/action" {
			continue
		}
		switch e["eventName"].(map[string]any)["value"] {
		case "BeginRequest":
			begin = e
		case "EndRequest":
			end = e
		}
	}
	if begin == nil || end == nil {
		t.Fatalf("no begin and end events of the failover in %d events: %v", len(evs), evs)
	}
	if end["status"].(map[string]any)["value"] != "Succeeded" || end["caller"] != "admin" || end["resourceGroupName"] != "rg-s" ||
		!strings.HasSuffix(end["resourceId"].(string), "/locations/westus/instanceFailoverGroups/al") || end["correlationId"] != begin["correlationId"] {
		b, _ := json.MarshalIndent(end, "", " ")
		t.Errorf("failover end event:\n%s", b)
	}
	if _, ok := end["properties"].(map[string]any)["durationMs"]; !ok {
		t.Error("the end event has no duration")
	}
	for _, e := range evs {
		if e["resourceGroupName"] != "rg-s" {
			t.Errorf("resourceGroupName filter let through %v", e["resourceGroupName"])
		}
	}
	// The instances' creation is in rg-p's log, not in a window that ended before it.
	if n := len(activity(t, f, filter+" and resourceGroupName eq 'rg-p'")); n < 4 {
		t.Errorf("rg-p has %d events, want the instance and group creations (begin and end)", n)
	}
	if n := len(activity(t, f, "eventTimestamp ge '2020-01-01T00:00:00Z' and eventTimestamp le '2020-01-02T00:00:00Z'")); n != 0 {
		t.Errorf("a window in 2020 has %d events", n)
	}
	for _, bad := range []string{"", "resourceGroupName eq 'rg-p'", "eventTimestamp ge 'yesterday'", "status eq 'Failed'"} {
		r := f.call("GET", activityPath(bad), nil)
		if r.Status != http.StatusBadRequest || r.code() != "InvalidFilter" {
			t.Errorf("filter %q = %d %s, want 400 InvalidFilter", bad, r.Status, r.Body)
		}
	}
	// Metrics, with the token as every API call.
	r := f.call("GET", "/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics = %d", r.Status)
	}
	for _, want := range []string{`fog_group_epoch{group="al"} 2`, `fog_group_replication_lag_bytes{group="al"}`,
		`fog_failovers_total{initiator="user",kind="planned",outcome="Succeeded"} 1`, `fog_region_lease_age_seconds{region="westus"}`,
		`fog_instance_role{instance="al-s",region="westus",role="primary"} 1`, `fog_operation_duration_seconds_count{kind="failover",outcome="Succeeded"} 1`,
		`fog_gateway_connections{region="eastus",state="active"}`, `fog_agent_lease_renewal_age_seconds{region="eastus"}`} {
		if !strings.Contains(string(r.Body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if r := f.callWith("GET", "/metrics", nil, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("/metrics without the token = %d, want 401", r.Status)
	}
	out, _, err := f.runCLI("", "monitor", "activity-log", "list", "-g", "rg-s", "--offset", "1h")
	var list []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != len(evs) {
		t.Errorf("CLI activity-log list -g rg-s: %v, %d events (API: %d)", err, len(list), len(evs))
	}
	if _, _, err := f.runCLI("", "monitor", "activity-log", "list", "--offset", "soon"); err == nil || !strings.Contains(err.Error(), "--offset") {
		t.Errorf("bad --offset: %v", err)
	}
}
