package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testSub = "00000000-0000-0000-0000-000000000000"
	mibPath = "/subscriptions/" + testSub + "/resourceGroups/rgb/providers/Microsoft.Sql/managedInstances/mib"
	// ltrBackupsPath is where database shop of mib lists its LTR backups.
	ltrBackupsPath = "/subscriptions/" + testSub + "/resourceGroups/rgb/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstances/mib/longTermRetentionDatabases/shop/longTermRetentionManagedInstanceBackups"
)

// backupAPI answers the fake API's backup requests about instance mib of resource group rgb
// as the ARM API does; false for every other request.
func backupAPI(w http.ResponseWriter, r *http.Request, body string) bool {
	p := r.URL.Path
	switch {
	case r.Method == "GET" && p == "/subscriptions/"+testSub+"/providers/Microsoft.Sql/managedInstances":
		io.WriteString(w, `{"value":[{"id":"`+mibPath+`","name":"mib","location":"eastus","properties":{"state":"Ready"}},
			{"id":"/subscriptions/`+testSub+`/resourceGroups/rgb/providers/Microsoft.Sql/managedInstances/mic","name":"mic","location":"eastus","properties":{"state":"Ready"}},
			{"id":"/subscriptions/`+testSub+`/resourceGroups/rgb/providers/Microsoft.Sql/managedInstances/miw","name":"miw","location":"westus","properties":{"state":"Ready"}}]}`)
	case r.Method == "GET" && strings.HasSuffix(p, "/Microsoft.Insights/eventtypes/management/values"):
		if !strings.Contains(r.URL.Query().Get("$filter"), "resourceId eq '"+mibPath+"'") {
			io.WriteString(w, `{"value":[]}`)
			return true
		}
		io.WriteString(w, `{"value":[
			{"operationName":{"value":"Microsoft.Sql/managedInstances/backups/action"},"status":{"value":"Started"},"eventTimestamp":"2026-03-01T10:00:00Z","properties":{}},
			{"operationName":{"value":"Microsoft.Sql/managedInstances/backups/action"},"status":{"value":"Succeeded"},"eventTimestamp":"2026-03-01T10:00:07Z",
			 "properties":{"durationMs":7000,"backup":{"type":"full","size":25165824},"description":"full backup 1 (20260301-100000F) finished: 24.0 MiB of data, 3.1 MiB added to the repository, in 7s; the repository verified"}},
			{"operationName":{"value":"Microsoft.Sql/managedInstances/databases/write"},"status":{"value":"Succeeded"},"eventTimestamp":"2026-03-01T10:01:00Z","properties":{}}]}`)
	case !strings.HasPrefix(p, "/subscriptions/"+testSub+"/resourceGroups/rgb/"):
		return false
	case r.Method == "GET" && p == mibPath:
		io.WriteString(w, `{"id":"`+mibPath+`","name":"mib","location":"eastus","properties":{"state":"Ready","backupStorageRedundancy":"Geo"}}`)
	case r.Method == "GET" && p == mibPath+"/databases":
		io.WriteString(w, `{"value":[{"name":"shop","properties":{"status":"Online","earliestRestorePoint":"2026-03-01T10:00:08Z",
			"lastBackupTime":"2026-03-01T10:00:07Z","lastBackupType":"Full","lastBackupSizeBytes":25165824,"lastBackupDurationSeconds":7}}]}`)
	case r.Method == "GET" && p == mibPath+"/databases/shop":
		io.WriteString(w, `{"name":"shop","properties":{"status":"Online","earliestRestorePoint":"2026-03-01T10:00:08Z",
			"lastBackupTime":"2026-03-01T10:00:07Z","lastBackupType":"Full","lastBackupSizeBytes":25165824,"lastBackupDurationSeconds":7}}`)
	case r.Method == "GET" && p == mibPath+"/databases/shop/backupShortTermRetentionPolicies/default":
		io.WriteString(w, `{"name":"default","properties":{"retentionDays":7}}`)
	case r.Method == "GET" && p == mibPath+"/restorableDroppedDatabases":
		io.WriteString(w, `{"value":[{"name":"ledger,134170000000000000","properties":{"databaseName":"ledger","creationDate":"2026-03-01T09:00:00Z",
			"deletionDate":"2026-03-02T11:00:00Z","earliestRestoreDate":"2026-03-01T10:00:08Z"}}]}`)
	case r.Method == "GET" && p == mibPath+"/recoverableDatabases":
		io.WriteString(w, `{"value":[{"id":"`+mibPath+`/recoverableDatabases/shop","name":"shop","properties":{"lastAvailableBackupDate":"2026-03-01T10:00:07Z",
			"geoBackupRegion":"westus","lastArchivedTime":"2026-03-02T08:30:00Z"}}]}`)
	case r.Method == "GET" && p == mibPath+"/databases/shop/backupLongTermRetentionPolicies/default":
		io.WriteString(w, `{"name":"default","properties":{"weeklyRetention":"P12W","monthlyRetention":"PT0S","yearlyRetention":"P5Y","weekOfYear":1}}`)
	case r.Method == "GET" && p == ltrBackupsPath:
		io.WriteString(w, `{"value":[{"id":"`+ltrBackupsPath+`/uid1;20260301-100000F","name":"uid1;20260301-100000F","properties":{"databaseName":"shop",
			"backupTime":"2026-03-01T10:00:07Z","backupExpirationTime":"2026-05-24T10:00:07Z"}}]}`)
	case r.Method == "DELETE" && strings.HasPrefix(p, ltrBackupsPath+"/"):
		w.Header().Set("Azure-AsyncOperation", "https://api.example/subscriptions/"+testSub+"/providers/Microsoft.Sql/locations/eastus/longTermRetentionManagedInstanceBackupAzureAsyncOperation/op3?api-version=2023-08-01")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == "PUT" && strings.Contains(body, `"weeklyRetention":"P99Y"`):
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":"InvalidParameterValue","message":"properties.weeklyRetention 'P99Y' is not valid: a retention is at least one week and at most ten years <b>."}}`)
	case r.Method == "PUT" && strings.Contains(body, `"recoverableDatabaseId"`) && strings.HasSuffix(p, "/shop_far"):
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":{"code":"GeoBackupNotAvailable","message":"The copy of managed instance 'mib''s backups is in westus <script>x</script>."}}`)
	case r.Method == "PUT" && strings.Contains(body, `"restorePointInTime":"2020-`):
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":"RestorePointInTimeOutOfRange","message":"The restore point in time 2020-01-01T00:00:00Z is outside database 'shop''s restore window, 2026-03-01T10:00:08Z to now <script>alert(1)</script>."}}`)
	case r.Method == "PUT" && strings.Contains(body, `"retentionDays":40`):
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":"InvalidBackupRetentionPeriod","message":"The retention days of 40 is not a valid configuration. Valid backup retention in days must be between 1 and 35."}}`)
	case r.Method == "PUT":
		w.Header().Set("Azure-AsyncOperation", "https://api.example/subscriptions/"+testSub+"/providers/Microsoft.Sql/locations/eastus/managedDatabaseAzureAsyncOperation/op2?api-version=2023-08-01")
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":"ResourceNotFound","message":"not here"}}`)
	}
	return true
}

func getPage(t *testing.T, hc *http.Client, u string, ck *http.Cookie) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.AddCookie(ck)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// postPage is postForm that returns the page too.
func postPage(t *testing.T, hc *http.Client, u string, form url.Values, ck *http.Cookie, origin string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	req.AddCookie(ck)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (f *fakeAPI) body(t *testing.T, path string) map[string]any {
	t.Helper()
	f.mu.Lock()
	b, ok := f.bodies[path]
	f.mu.Unlock()
	if !ok {
		t.Fatalf("no PUT of %s reached the API", path)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		t.Fatalf("PUT %s body %q: %v", path, b, err)
	}
	return m
}

func (f *fakeAPI) puts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

// TestBackupPages: the instance page shows the backups the API reports (a database's
// earliest restore point and last backup, the activity log's outcome and verification, the
// dropped databases), the database page its window and retention; each form sends the
// request the CLI sends, as the signed-in token, only with the session's CSRF token, and
// shows the API's refusals with their code, escaped.
func TestBackupPages(t *testing.T) {
	srv, api := newTestConsole(t, time.Hour)
	hc := noRedirect(srv)
	ck, csrf := signIn(t, srv, hc)

	status, page := getPage(t, hc, srv.URL+"/console/instances/rgb/mib", ck)
	for _, want := range []string{
		"Backup storage redundancy</dt><dd>Geo",
		`<td class="earliest">2026-03-01 10:00:08 UTC</td>`,
		`2026-03-01 10:00:07 UTC: Full, 24.0 MiB of data, in 7s`,
		"the repository verified",
		`<tr class="backup backup-succeeded"><td>2026-03-01 10:00:07 UTC</td><td>Full</td><td>Succeeded</td><td>24.0 MiB</td><td>7s</td>`,
		`<tr data-dropped="ledger">`, `name="dropped" value="ledger,134170000000000000"`, "2026-03-02 11:00:00 UTC",
		`href="/console/instances/rgb/mib/databases/shop#restore"`,
	} {
		if status != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("instance page (%d) lacks %q:\n%s", status, want, page)
		}
	}
	if strings.Contains(page, "Microsoft.Sql/managedInstances/databases/write") || strings.Count(page, `class="backup `) != 1 {
		t.Errorf("the recent backups list other activity, or a backup's start:\n%s", page)
	}

	dbPage := srv.URL + "/console/instances/rgb/mib/databases/shop"
	status, page = getPage(t, hc, dbPage, ck)
	for _, want := range []string{
		`<dd id="earliest">2026-03-01 10:00:08 UTC</dd>`, `<dd id="retention-days">7 days</dd>`,
		`<option value="rgb/mib" selected>`, `<option value="rgb/mic">`,
	} {
		if status != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("database page (%d) lacks %q:\n%s", status, want, page)
		}
	}
	if strings.Contains(page, "miw") {
		t.Error("the restore offers an instance of another region")
	}

	// Without the CSRF token nothing reaches the API.
	restore := dbPage + "/restore"
	if resp, _ := postPage(t, hc, restore, url.Values{"name": {"x"}, "time": {"2026-03-01T11:00:00"}}, ck, srv.URL); resp.StatusCode != http.StatusForbidden || api.puts() != 0 {
		t.Fatalf("a restore without the CSRF token: %d, %d PUTs", resp.StatusCode, api.puts())
	}
	// A time the console cannot read is refused before the API.
	resp, page := postPage(t, hc, restore, url.Values{"csrf": {csrf}, "name": {"x"}, "time": {"yesterday"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidRestoreParameters") || !strings.Contains(page, `value="yesterday"`) || api.puts() != 0 {
		t.Errorf("a bad time: %d, %d PUTs\n%s", resp.StatusCode, api.puts(), page)
	}

	// fog sql midb restore's request: into another instance of the region, at the time typed
	// (UTC), the fraction kept.
	resp, _ = postPage(t, hc, restore, url.Values{"csrf": {csrf}, "name": {"shop_copy"}, "time": {"2026-03-01T11:00:00.25"}, "target": {"rgb/mic"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/operation?") ||
		!strings.Contains(resp.Header.Get("Location"), "next=%2Fconsole%2Finstances%2Frgb%2Fmic") {
		t.Fatalf("restore: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	micDB := "/subscriptions/" + testSub + "/resourceGroups/rgb/providers/Microsoft.Sql/managedInstances/mic/databases/shop_copy"
	want := map[string]any{"properties": map[string]any{"createMode": "PointInTimeRestore", "sourceDatabaseId": mibPath + "/databases/shop", "restorePointInTime": "2026-03-01T11:00:00.25Z"}}
	if diff := cmp.Diff(want, api.body(t, micDB)); diff != "" {
		t.Errorf("the restore's PUT (-want +got):\n%s", diff)
	}
	if !api.asked("PUT " + micDB + " Bearer good-token") {
		t.Error("the restore was not sent as the signed-in token")
	}

	// The API's refusal, with its code and message (escaped), on the form as sent.
	resp, page = postPage(t, hc, restore, url.Values{"csrf": {csrf}, "name": {"old"}, "time": {"2020-01-01 00:00:00 UTC"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "<strong>RestorePointInTimeOutOfRange</strong>") ||
		!strings.Contains(page, "restore window, 2026-03-01T10:00:08Z to now &lt;script&gt;") || strings.Contains(page, "<script>alert") ||
		!strings.Contains(page, `id="restore-name" name="name" value="old"`) {
		t.Errorf("an out-of-range time: %d\n%s", resp.StatusCode, page)
	}

	// Retention: the API's validation, then a change.
	retention := dbPage + "/retention"
	resp, page = postPage(t, hc, retention, url.Values{"csrf": {csrf}, "retentionDays": {"40"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidBackupRetentionPeriod") || !strings.Contains(page, "between 1 and 35") {
		t.Errorf("retention 40: %d\n%s", resp.StatusCode, page)
	}
	policy := mibPath + "/databases/shop/backupShortTermRetentionPolicies/default"
	for _, c := range []struct {
		days string
		want any
	}{{"14", 14.0}, {"2.5", 2.5}} {
		resp, _ = postPage(t, hc, retention, url.Values{"csrf": {csrf}, "retentionDays": {c.days}}, ck, srv.URL)
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("retention %s: %d", c.days, resp.StatusCode)
		}
		if diff := cmp.Diff(map[string]any{"properties": map[string]any{"retentionDays": c.want}}, api.body(t, policy)); diff != "" {
			t.Errorf("retention %s: the PUT (-want +got):\n%s", c.days, diff)
		}
	}
	resp, page = postPage(t, hc, retention, url.Values{"csrf": {csrf}, "retentionDays": {"a week"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidBackupRetentionPeriod") {
		t.Errorf("retention 'a week': %d\n%s", resp.StatusCode, page)
	}

	// A dropped database: fog sql midb restore --deleted-time's request, as it was when
	// dropped, then at a time.
	dropped := srv.URL + "/console/instances/rgb/mib/dropped/restore"
	ledger := mibPath + "/databases/ledger_back"
	resp, _ = postPage(t, hc, dropped, url.Values{"csrf": {csrf}, "dropped": {"ledger,134170000000000000"}, "name": {"ledger_back"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "next=%2Fconsole%2Finstances%2Frgb%2Fmib") {
		t.Fatalf("dropped restore: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	want = map[string]any{"properties": map[string]any{"createMode": "PointInTimeRestore", "restorableDroppedDatabaseId": mibPath + "/restorableDroppedDatabases/ledger%2C134170000000000000"}} // the id the CLI sends (its path, escaped)
	if diff := cmp.Diff(want, api.body(t, ledger)); diff != "" {
		t.Errorf("the dropped database's restore (-want +got):\n%s", diff)
	}
	postPage(t, hc, dropped, url.Values{"csrf": {csrf}, "dropped": {"ledger,134170000000000000"}, "name": {"ledger_back"}, "time": {"2026-03-02T10:00:00"}}, ck, srv.URL)
	want["properties"].(map[string]any)["restorePointInTime"] = "2026-03-02T10:00:00Z"
	if diff := cmp.Diff(want, api.body(t, ledger)); diff != "" {
		t.Errorf("the dropped database's restore at a time (-want +got):\n%s", diff)
	}
	resp, page = postPage(t, hc, dropped, url.Values{"csrf": {csrf}, "dropped": {"ledger"}, "name": {"x"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidRestorableDroppedDatabaseId") {
		t.Errorf("a dropped database not from the list: %d\n%s", resp.StatusCode, page)
	}
}
