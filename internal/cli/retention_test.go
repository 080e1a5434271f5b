package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testSub = "6f1c3c8e-4b7e-4f4e-9d3a-2a1b0c9d8e7f"

// fakeAPI answers the requests of a database's short-term retention policy and of the
// database itself as Fog's API does (a PUT is 202 with Azure-AsyncOperation and Location,
// then Succeeded, and the policy is read back), and records what it was sent. The commands'
// flags, request and output are what these tests are about; the API's own behaviour is
// tested in package api.
type fakeAPI struct {
	mu       sync.Mutex
	requests []string // method, path and body of each request but the polls
	days     int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	db := "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi1/databases/sales"
	policy := db + "/backupShortTermRetentionPolicies/default"
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	policyBody := func() map[string]any {
		return map[string]any{"id": policy, "name": "default", "type": "Microsoft.Sql/managedInstances/databases/backupShortTermRetentionPolicies",
			"properties": map[string]any{"retentionDays": f.days}}
	}
	notFound := map[string]any{"error": map[string]any{"code": "ResourceNotFound", "message": "The requested resource of type 'Microsoft.Sql/managedInstances/databases' with name 'mi1/nope' was not found."}}
	if !strings.HasSuffix(r.URL.Path, "/status") {
		f.requests = append(f.requests, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(body)))
	}
	switch {
	case r.Method == "PUT" && r.URL.Path == policy:
		var b struct {
			Properties struct{ RetentionDays int } `json:"properties"`
		}
		_ = json.Unmarshal(body, &b)
		if d := b.Properties.RetentionDays; d < 1 || d > 35 {
			reply(http.StatusBadRequest, map[string]any{"error": map[string]any{"code": "InvalidBackupRetentionPeriod",
				"message": "The retention days of 36 is not a valid configuration. Valid backup retention in days must be between 1 and 35."}})
			return
		}
		f.days = b.Properties.RetentionDays
		base := "https://" + r.Host + "/subscriptions/" + testSub + "/providers/Microsoft.Sql/locations/eastus/"
		w.Header().Set("Azure-AsyncOperation", base+"managedShortTermRetentionPolicyAzureAsyncOperation/op1/status")
		w.Header().Set("Location", base+"managedShortTermRetentionPolicyOperationResults/op1")
		w.Header().Set("Retry-After", "1")
		reply(http.StatusAccepted, map[string]any{"operation": "AlterManagedDatabase", "startTime": "2026-12-01T10:00:00Z"})
	case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/status"):
		reply(http.StatusOK, map[string]any{"name": "op1", "status": "Succeeded", "startTime": "2026-12-01T10:00:00Z"})
	case r.Method == "GET" && r.URL.Path == policy:
		reply(http.StatusOK, policyBody())
	case r.Method == "GET" && r.URL.Path == db:
		reply(http.StatusOK, map[string]any{"id": db, "name": "sales", "type": "Microsoft.Sql/managedInstances/databases", "location": "eastus",
			"properties": map[string]any{"status": "Online", "creationDate": "2026-12-01T08:00:00Z", "earliestRestorePoint": "2026-12-01T09:01:30Z",
				"lastBackupTime": "2026-12-01T09:01:30Z", "lastBackupType": "Full", "lastBackupSizeBytes": 31457280, "lastBackupDurationSeconds": 90}})
	default:
		reply(http.StatusNotFound, notFound)
	}
}

// startFake serves f over TLS on loopback and writes a client config for it.
func startFake(t *testing.T, f *fakeAPI) string {
	t.Helper()
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	b, err := json.Marshal(map[string]string{"apiUrl": srv.URL, "caCert": string(ca), "token": "tok", "subscription": testSub})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs the fog command line with args against the config and returns its output.
func run(config string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := Run(context.Background(), append(args, "--config", config), IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return out.String(), errb.String(), err
}

// `set` sends az's body and prints the policy as az does (properties flattened, the resource
// group added); `show` reads it; both take --mi or --managed-instance.
func TestShortTermRetentionSetAndShow(t *testing.T) {
	f := &fakeAPI{days: 7}
	cfg := startFake(t, f)
	want := map[string]any{
		"id":            "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi1/databases/sales/backupShortTermRetentionPolicies/default",
		"name":          "default",
		"resourceGroup": "rg",
		"retentionDays": 14.0,
		"type":          "Microsoft.Sql/managedInstances/databases/backupShortTermRetentionPolicies",
	}
	out, _, err := run(cfg, "sql", "midb", "short-term-retention-policy", "set", "-g", "rg", "--mi", "mi1", "-n", "sales", "--retention-days", "14")
	if err != nil {
		t.Fatalf("set: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("set printed %q: %v", out, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("set printed (-want +got):\n%s", d)
	}
	policy := "/subscriptions/" + testSub + "/resourceGroups/rg/providers/Microsoft.Sql/managedInstances/mi1/databases/sales/backupShortTermRetentionPolicies/default"
	if d := cmp.Diff([]string{"PUT " + policy + ` {"properties":{"retentionDays":14}}`, "GET " + policy}, f.requests); d != "" {
		t.Errorf("set's requests (-want +got):\n%s", d)
	}

	out, _, err = run(cfg, "sql", "midb", "short-term-retention-policy", "show", "-g", "rg", "--managed-instance", "mi1", "-n", "sales")
	got = nil
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("show = %q, %v", out, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("show printed (-want +got):\n%s", d)
	}
	out, _, err = run(cfg, "sql", "midb", "short-term-retention-policy", "show", "-g", "rg", "--mi", "mi1", "-n", "sales", "--query", "retentionDays", "-o", "tsv")
	if err != nil || strings.TrimSpace(out) != "14" {
		t.Errorf("show --query retentionDays -o tsv = %q, %v; want 14", out, err)
	}
}

// Bad command lines are usage errors (exit 2) naming the flag, and reach no API; the API's
// refusals come back with their ARM code (exit 1), and a show of a database that does not
// exist exits 3, as az's show does.
func TestShortTermRetentionErrors(t *testing.T) {
	f := &fakeAPI{days: 7}
	cfg := startFake(t, f)
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"set", "-g", "rg", "--mi", "mi1", "-n", "sales", "--retention-days", "two weeks"}, "argument --retention-days", 2},
		{[]string{"set", "-g", "rg", "--mi", "mi1", "-n", "sales", "--retention-days", "7.5"}, "argument --retention-days", 2},
		{[]string{"set", "-g", "rg", "--mi", "mi1", "-n", "sales"}, `"retention-days" not set`, 2},
		{[]string{"set", "-g", "rg", "-n", "sales", "--retention-days", "14"}, "argument --mi", 2},
		{[]string{"set", "-g", "rg", "--mi", "mi1", "--retention-days", "14"}, `"name" not set`, 2},
		{[]string{"show", "--mi", "mi1", "-n", "sales"}, `"resource-group" not set`, 2},
		{[]string{"show", "-g", "rg", "--mi", "mi1", "-n", "sales", "--bogus"}, "unknown flag", 2},
	} {
		_, _, err := run(cfg, append([]string{"sql", "midb", "short-term-retention-policy"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || ExitCode(err) != tc.code {
			t.Errorf("%s: err = %v (exit %d), want %q, exit %d", strings.Join(tc.args, " "), err, ExitCode(err), tc.want, tc.code)
		}
	}
	if len(f.requests) != 0 {
		t.Errorf("bad command lines reached the API: %v", f.requests)
	}

	_, _, err := run(cfg, "sql", "midb", "short-term-retention-policy", "set", "-g", "rg", "--mi", "mi1", "-n", "sales", "--retention-days", "36")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "InvalidBackupRetentionPeriod" || !strings.Contains(err.Error(), "between 1 and 35") || ExitCode(err) != 1 {
		t.Errorf("set 36 = %v (exit %d), want the API's InvalidBackupRetentionPeriod, exit 1", err, ExitCode(err))
	}
	_, _, err = run(cfg, "sql", "midb", "short-term-retention-policy", "show", "-g", "rg", "--mi", "mi1", "-n", "nope")
	if !errors.As(err, &ae) || ae.Code != "ResourceNotFound" || ExitCode(err) != 3 {
		t.Errorf("show of a missing database = %v (exit %d), want ResourceNotFound, exit 3", err, ExitCode(err))
	}
}

// `midb show` prints the database's backup properties at the top level, as az flattens
// properties.
func TestMIDBShowBackupProperties(t *testing.T) {
	cfg := startFake(t, &fakeAPI{days: 7})
	out, _, err := run(cfg, "sql", "midb", "show", "-g", "rg", "--mi", "mi1", "-n", "sales")
	var got map[string]any
	if err != nil || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("midb show = %q, %v", out, err)
	}
	for k, v := range map[string]any{"earliestRestorePoint": "2026-12-01T09:01:30Z", "lastBackupTime": "2026-12-01T09:01:30Z", "lastBackupType": "Full",
		"lastBackupSizeBytes": 31457280.0, "lastBackupDurationSeconds": 90.0} {
		if got[k] != v {
			t.Errorf("midb show %s = %v, want %v", k, got[k], v)
		}
	}
}
