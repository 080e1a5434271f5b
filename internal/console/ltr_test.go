package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestGeoRestoreAndLTRPages: the instance page lists the databases a geo-restore can recover,
// with the instances of the copy's region to recover into; the database page shows the LTR
// policy and backups. Each form sends the CLI's request (fog sql midb recover, ltr-policy
// set, ltr-backup restore and delete), only with the session's CSRF token, and shows the
// API's refusals with their code, escaped, on the form as sent.
func TestGeoRestoreAndLTRPages(t *testing.T) {
	srv, api := newTestConsole(t, time.Hour)
	hc := noRedirect(srv)
	ck, csrf := signIn(t, srv, hc)
	miwPath := "/subscriptions/" + testSub + "/resourceGroups/rgb/providers/Microsoft.Sql/managedInstances/miw"

	// Geo-restore: listed, with only the copy's region's instances as targets.
	status, page := getPage(t, hc, srv.URL+"/console/instances/rgb/mib", ck)
	for _, want := range []string{
		`<tr data-recoverable="shop">`, "<td>westus</td><td>2026-03-01 10:00:07 UTC</td><td>2026-03-02 08:30:00 UTC</td>",
		`name="recoverable" value="shop"`, `<option value="rgb/miw">miw (rgb, westus)</option>`,
	} {
		if status != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("instance page (%d) lacks %q:\n%s", status, want, page)
		}
	}
	if i := strings.Index(page, `id="recoverable-databases"`); i < 0 || strings.Contains(page[i:], `value="rgb/mic"`) {
		t.Error("the recover form offers an instance outside the copy's region")
	}

	recoverURL := srv.URL + "/console/instances/rgb/mib/recover"
	before := api.puts()
	if resp, _ := postPage(t, hc, recoverURL, url.Values{"recoverable": {"shop"}, "name": {"x"}, "target": {"rgb/miw"}}, ck, srv.URL); resp.StatusCode != http.StatusForbidden || api.puts() != before {
		t.Fatalf("a recover without the CSRF token: %d, %d PUTs", resp.StatusCode, api.puts()-before)
	}
	if resp, _ := postPage(t, hc, recoverURL, url.Values{"csrf": {csrf}, "recoverable": {"shop"}, "name": {"x"}, "target": {"rgb/miw"}}, ck, "https://evil.example"); resp.StatusCode != http.StatusForbidden || api.puts() != before {
		t.Fatalf("a recover from another origin: %d, %d PUTs", resp.StatusCode, api.puts()-before)
	}
	resp, page := postPage(t, hc, recoverURL, url.Values{"csrf": {csrf}, "recoverable": {"shop"}, "name": {" "}, "target": {"rgb/miw"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidRestoreParameters") || api.puts() != before {
		t.Errorf("a recover without a name: %d\n%s", resp.StatusCode, page)
	}
	resp, _ = postPage(t, hc, recoverURL, url.Values{"csrf": {csrf}, "recoverable": {"shop"}, "name": {"shop_geo"}, "target": {"rgb/miw"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/operation?") ||
		!strings.Contains(resp.Header.Get("Location"), "next=%2Fconsole%2Finstances%2Frgb%2Fmiw") {
		t.Fatalf("recover: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	want := map[string]any{"properties": map[string]any{"createMode": "Recovery", "recoverableDatabaseId": mibPath + "/recoverableDatabases/shop"}}
	if diff := cmp.Diff(want, api.body(t, miwPath+"/databases/shop_geo")); diff != "" {
		t.Errorf("the recover's PUT (-want +got):\n%s", diff)
	}
	if !api.asked("PUT " + miwPath + "/databases/shop_geo Bearer good-token") {
		t.Error("the recover was not sent as the signed-in token")
	}
	resp, page = postPage(t, hc, recoverURL, url.Values{"csrf": {csrf}, "recoverable": {"shop"}, "name": {"shop_far"}, "target": {"rgb/miw"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(page, "<strong>GeoBackupNotAvailable</strong>") ||
		!strings.Contains(page, "westus &lt;script&gt;") || strings.Contains(page, "<script>x") ||
		!strings.Contains(page, `id="recover-name-0" name="name" value="shop_far"`) || !strings.Contains(page, `<option value="rgb/miw" selected>`) {
		t.Errorf("a refused recover: %d\n%s", resp.StatusCode, page)
	}

	// LTR: the policy and the backups on the database's page.
	dbPage := srv.URL + "/console/instances/rgb/mib/databases/shop"
	backupID := ltrBackupsPath + "/uid1;20260301-100000F"
	status, page = getPage(t, hc, dbPage, ck)
	for _, want := range []string{
		`<dd id="ltr-policy">weekly P12W, monthly PT0S, yearly P5Y (week 1)</dd>`,
		`id="ltr-weekly" name="weeklyRetention" value="P12W"`, `id="ltr-week" name="weekOfYear" value="1"`,
		`<tr data-ltr-backup="uid1;20260301-100000F">`, `<td class="backup-time">2026-03-01 10:00:07 UTC</td><td class="expires">2026-05-24 10:00:07 UTC</td>`,
		`name="backup" value="` + backupID + `"`,
	} {
		if status != http.StatusOK || !strings.Contains(page, want) {
			t.Errorf("database page (%d) lacks %q:\n%s", status, want, page)
		}
	}
	if i := strings.Index(page, `id="ltr-backups"`); i < 0 || strings.Contains(page[i:], "miw") {
		t.Error("the LTR restore offers an instance of another region")
	}

	policyURL := dbPage + "/ltr-policy"
	policy := mibPath + "/databases/shop/backupLongTermRetentionPolicies/default"
	before = api.puts()
	if resp, _ := postPage(t, hc, policyURL, url.Values{"weeklyRetention": {"P4W"}}, ck, srv.URL); resp.StatusCode != http.StatusForbidden || api.puts() != before {
		t.Fatalf("a policy without the CSRF token: %d", resp.StatusCode)
	}
	// ltr-policy set's request: the four values, a retention left empty as none.
	resp, _ = postPage(t, hc, policyURL, url.Values{"csrf": {csrf}, "weeklyRetention": {"p4w"}, "monthlyRetention": {""}, "yearlyRetention": {"P10Y"}, "weekOfYear": {"20"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "next=%2Fconsole%2Finstances%2Frgb%2Fmib%2Fdatabases%2Fshop") {
		t.Fatalf("policy: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	want = map[string]any{"properties": map[string]any{"weeklyRetention": "P4W", "monthlyRetention": "PT0S", "yearlyRetention": "P10Y", "weekOfYear": 20.0}}
	if diff := cmp.Diff(want, api.body(t, policy)); diff != "" {
		t.Errorf("the policy's PUT (-want +got):\n%s", diff)
	}
	// A week that is a number but no whole one goes to the API as typed; one that is no
	// number is refused here.
	postPage(t, hc, policyURL, url.Values{"csrf": {csrf}, "weeklyRetention": {"P4W"}, "weekOfYear": {"2.5"}}, ck, srv.URL)
	want = map[string]any{"properties": map[string]any{"weeklyRetention": "P4W", "monthlyRetention": "PT0S", "yearlyRetention": "PT0S", "weekOfYear": 2.5}}
	if diff := cmp.Diff(want, api.body(t, policy)); diff != "" {
		t.Errorf("the policy's PUT with week 2.5 (-want +got):\n%s", diff)
	}
	before = api.puts()
	resp, page = postPage(t, hc, policyURL, url.Values{"csrf": {csrf}, "weeklyRetention": {"P4W"}, "weekOfYear": {"first"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidParameterValue") || !strings.Contains(page, `name="weekOfYear" value="first"`) {
		t.Errorf("week 'first': %d\n%s", resp.StatusCode, page)
	}
	// The API's validation, escaped, with the values as typed.
	resp, page = postPage(t, hc, policyURL, url.Values{"csrf": {csrf}, "weeklyRetention": {"P99Y"}, "weekOfYear": {"1"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "<strong>InvalidParameterValue</strong>") ||
		!strings.Contains(page, "at most ten years &lt;b&gt;") || !strings.Contains(page, `name="weeklyRetention" value="P99Y"`) {
		t.Errorf("weekly P99Y: %d\n%s", resp.StatusCode, page)
	}

	// ltr-backup restore's request, into another instance of the region.
	restoreURL := dbPage + "/ltr-backups/restore"
	if resp, _ := postPage(t, hc, restoreURL, url.Values{"backup": {backupID}, "name": {"x"}}, ck, srv.URL); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("an LTR restore without the CSRF token: %d", resp.StatusCode)
	}
	resp, _ = postPage(t, hc, restoreURL, url.Values{"csrf": {csrf}, "backup": {backupID}, "name": {"shop_w9"}, "target": {"rgb/mic"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "next=%2Fconsole%2Finstances%2Frgb%2Fmic") {
		t.Fatalf("LTR restore: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	micDB := "/subscriptions/" + testSub + "/resourceGroups/rgb/providers/Microsoft.Sql/managedInstances/mic/databases/shop_w9"
	want = map[string]any{"properties": map[string]any{"createMode": "RestoreLongTermRetentionBackup", "longTermRetentionBackupResourceId": backupID}}
	if diff := cmp.Diff(want, api.body(t, micDB)); diff != "" {
		t.Errorf("the LTR restore's PUT (-want +got):\n%s", diff)
	}
	before = api.puts()
	resp, page = postPage(t, hc, restoreURL, url.Values{"csrf": {csrf}, "backup": {"/subscriptions/x/elsewhere"}, "name": {"y"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "InvalidLongTermRetentionBackupResourceId") || api.puts() != before {
		t.Errorf("an LTR restore of no backup: %d\n%s", resp.StatusCode, page)
	}

	// ltr-backup delete's request, once confirmed.
	deleteURL := dbPage + "/ltr-backups/delete"
	if resp, _ := postPage(t, hc, deleteURL, url.Values{"backup": {backupID}, "confirm": {"yes"}}, ck, srv.URL); resp.StatusCode != http.StatusForbidden || api.asked("DELETE "+ltrBackupsPath) {
		t.Fatalf("an LTR delete without the CSRF token: %d", resp.StatusCode)
	}
	resp, page = postPage(t, hc, deleteURL, url.Values{"csrf": {csrf}, "backup": {backupID}}, ck, srv.URL)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "ConfirmationMismatch") || api.asked("DELETE "+ltrBackupsPath) {
		t.Errorf("an unconfirmed LTR delete: %d\n%s", resp.StatusCode, page)
	}
	resp, _ = postPage(t, hc, deleteURL, url.Values{"csrf": {csrf}, "backup": {backupID}, "confirm": {"yes"}}, ck, srv.URL)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/operation?") ||
		!api.asked("DELETE "+backupID+" Bearer good-token") {
		t.Errorf("LTR delete: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
