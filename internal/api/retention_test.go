package api

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/resource"
	"github.com/fogdb/fog/internal/store"
)

// backupAPI is Fog's API over a real store, served over TLS on loopback, with one instance
// (rg/mi1 in eastus) whose agent is played by the test: it writes the observed state (the
// databases sales and hr, and the backups) straight into the store. No controller leads.
type backupAPI struct {
	t   *testing.T
	st  store.Store
	c   *fogclient.Client
	ctx context.Context
	// status is the observed state the agent last "published".
	status instance.Status
}

const (
	backupUID  = "0f3e9a1c-0000-4000-8000-00000000b001"
	backupRG   = "rg"
	backupMI   = "mi1"
	backupZone = "zone1"
)

// created is when the test's databases were made.
var created = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

func newBackupAPI(t *testing.T) *backupAPI {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "fog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	ctrl, err := controller.New(controller.Config{Regions: []string{"eastus", "westus"}}, st, log)
	if err != nil {
		t.Fatal(err)
	}
	tokens := authz.NewTokens(st)
	tok, _, err := tokens.CreateFor(ctx, "admin", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(New(ctrl, tokens, log).Handler())
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := fogclient.New(fogclient.Config{APIURL: srv.URL, CACert: string(ca), Token: tok, Subscription: tSub}, fogclient.WithPollInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	a := &backupAPI{t: t, st: st, c: c, ctx: ctx}
	m := resource.ManagedInstance{UID: backupUID, Subscription: tSub, ResourceGroup: backupRG, Name: backupMI, Location: "eastus",
		Host: "127.0.0.1", Port: 5432, DNSZone: backupZone, AdministratorLogin: "fogadmin", ProvisioningState: resource.ProvisioningSucceeded,
		BackupStanza: backupUID, BackupRetentionDays: resource.DefaultBackupRetentionDays}
	if err := store.Put(ctx, st, group.InstanceKey(tSub, backupRG, backupMI), m); err != nil {
		t.Fatal(err)
	}
	a.publish(func(s *instance.Status) {
		*s = instance.Status{UID: backupUID, Phase: instance.PhaseReady, Role: instance.RolePrimary,
			Databases: []instance.DB{{Name: "hr", Collation: "C.UTF-8", Created: created.Add(3 * time.Hour)}, {Name: "sales", Collation: "C.UTF-8", Created: created}}}
	})
	return a
}

// publish changes the observed state as the instance's agent would publish it.
func (a *backupAPI) publish(change func(*instance.Status)) {
	a.t.Helper()
	change(&a.status)
	if err := store.Put(a.ctx, a.st, instance.StatusKey("eastus", backupUID), a.status); err != nil {
		a.t.Fatal(err)
	}
}

// record is the instance's stored record.
func (a *backupAPI) record() resource.ManagedInstance {
	a.t.Helper()
	var m resource.ManagedInstance
	if _, err := store.Get(a.ctx, a.st, group.InstanceKey(tSub, backupRG, backupMI), &m); err != nil {
		a.t.Fatal(err)
	}
	return m
}

// specRetention is the retention the instance's desired state asks of its agent (0: no spec).
func (a *backupAPI) specRetention() int {
	a.t.Helper()
	var s instance.Spec
	_, err := store.Get(a.ctx, a.st, instance.SpecKey("eastus", backupUID), &s)
	if errors.Is(err, store.ErrNotFound) || s.Backup == nil {
		return 0
	}
	if err != nil {
		a.t.Fatal(err)
	}
	return s.Backup.RetentionDays
}

// raw sends a request and returns the answer, an ARM error decoded as *fogclient.Error.
func (a *backupAPI) raw(method, path string, body any) (*fogclient.Response, error) {
	return a.c.Do(a.ctx, method, path, body, nil)
}

// errorOf is err's status and ARM code (0, "" for none).
func errorOf(err error) (int, string, string) {
	var e *fogclient.Error
	if errors.As(err, &e) {
		return e.Status, e.Code, e.Message
	}
	return 0, "", ""
}

// A database shows Azure's earliestRestorePoint and Fog's lastBackup* once its instance has a
// backup, and none of them before: the earliest point is the end of the oldest backup, never
// before the database was created nor further back than its retention; the last backup is
// the instance's newest, whichever database is read (PostgreSQL backs up the whole cluster).
func TestDatabaseBackupProperties(t *testing.T) {
	a := newBackupAPI(t)
	raw, err := a.raw("GET", a.c.DatabasePath(backupRG, backupMI, "sales"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"earliestRestorePoint", "lastBackupTime", "lastBackupType", "lastBackupSizeBytes", "lastBackupDurationSeconds"} {
		if strings.Contains(string(raw.Body), key) {
			t.Errorf("a database of an instance without backups shows %s: %s", key, raw.Body)
		}
	}

	now := time.Now().UTC().Truncate(time.Second)
	full := instance.Backup{Label: "F", Type: instance.BackupFull, Start: now.Add(-2 * time.Hour), Stop: now.Add(-2*time.Hour + 90*time.Second), Size: 30 << 20, RepoSize: 3 << 20, Seq: 1}
	diff := instance.Backup{Label: "F_D", Type: instance.BackupDiff, Start: now.Add(-time.Hour), Stop: now.Add(-time.Hour + 5*time.Second), Size: 31 << 20, RepoSize: 1 << 20, Seq: 2}
	sales := now.Add(-30 * 24 * time.Hour) // made before the oldest backup ended
	hr := now.Add(-90 * time.Minute)       // made after it
	a.publish(func(s *instance.Status) {
		s.Databases = []instance.DB{{Name: "hr", Collation: "C.UTF-8", Created: hr}, {Name: "sales", Collation: "C.UTF-8", Created: sales}}
		s.Backup = &instance.BackupStatus{Stanza: backupUID, Seq: 2, Backups: []instance.Backup{full, diff}, Health: instance.BackupHealthy}
	})
	last := diff.Stop
	size, took := diff.Size, int64(5)
	ptr := func(t time.Time) *time.Time { return &t }
	want := map[string]resource.DatabaseProperties{
		"sales": {EarliestRestorePoint: ptr(full.Stop.Truncate(time.Second).Add(time.Second)), LastBackupTime: &last, LastBackupType: "Differential", LastBackupSizeBytes: &size, LastBackupDurationSeconds: &took},
		"hr":    {EarliestRestorePoint: ptr(hr), LastBackupTime: &last, LastBackupType: "Differential", LastBackupSizeBytes: &size, LastBackupDurationSeconds: &took},
	}
	backupProps := func(p resource.DatabaseProperties) resource.DatabaseProperties {
		return resource.DatabaseProperties{EarliestRestorePoint: p.EarliestRestorePoint, LastBackupTime: p.LastBackupTime, LastBackupType: p.LastBackupType,
			LastBackupSizeBytes: p.LastBackupSizeBytes, LastBackupDurationSeconds: p.LastBackupDurationSeconds}
	}
	for name, w := range want {
		db, err := a.c.GetDatabase(a.ctx, backupRG, backupMI, name)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(w, backupProps(db.Properties)); d != "" {
			t.Errorf("GET %s: backup properties (-want +got):\n%s", name, d)
		}
	}
	list, err := a.c.ListDatabases(a.ctx, backupRG, backupMI)
	if err != nil || len(list) != 2 {
		t.Fatalf("list = %v, %v; want two databases", list, err)
	}
	for _, db := range list {
		if d := cmp.Diff(want[db.Name], backupProps(db.Properties)); d != "" {
			t.Errorf("list, %s: backup properties (-want +got):\n%s", db.Name, d)
		}
	}

	// The repository keeps more than a database's retention (another database keeps
	// longer): its window starts retentionDays ago, not at the oldest backup.
	old := instance.Backup{Label: "F0", Type: instance.BackupFull, Start: now.Add(-20 * 24 * time.Hour), Stop: now.Add(-20*24*time.Hour + time.Minute), Size: 1}
	a.publish(func(s *instance.Status) { s.Backup.Backups = []instance.Backup{old, full, diff} })
	if _, err := a.c.SetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "hr", 30); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	db, err := a.c.GetDatabase(a.ctx, backupRG, backupMI, "sales")
	if err != nil {
		t.Fatal(err)
	}
	if e := db.Properties.EarliestRestorePoint; e == nil || e.Before(before.Add(-7*24*time.Hour-time.Minute)) || e.After(time.Now().Add(-7*24*time.Hour)) {
		t.Errorf("sales (7 days) with backups from 20 days ago: earliestRestorePoint = %v, want 7 days ago", e)
	}
	if db, err := a.c.GetDatabase(a.ctx, backupRG, backupMI, "hr"); err != nil || db.Properties.EarliestRestorePoint == nil || !db.Properties.EarliestRestorePoint.Equal(hr) {
		t.Errorf("hr (30 days, made 90 minutes ago): earliestRestorePoint = %v (%v), want its creation %s", db.Properties.EarliestRestorePoint, err, hr)
	}
}

// A database's short-term retention policy reads as Azure's (7 days until set, named
// default); a PUT answers 202 with the long-running-operation headers, as Azure does, and
// its result is the policy; the instance's record and its desired state keep the longest
// retention of its databases, a database without a policy counting 7.
func TestShortTermRetentionPolicy(t *testing.T) {
	a := newBackupAPI(t)
	got, err := a.c.GetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "sales")
	if err != nil {
		t.Fatal(err)
	}
	id := a.c.DatabasePath(backupRG, backupMI, "sales") + "/backupShortTermRetentionPolicies/default"
	seven := 7
	want := &fogclient.ShortTermRetentionPolicy{ID: id, Name: "default", Type: "Microsoft.Sql/managedInstances/databases/backupShortTermRetentionPolicies",
		Properties: resource.ShortTermRetentionProperties{RetentionDays: &seven}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("policy before any is set (-want +got):\n%s", d)
	}
	list, err := a.c.ListShortTermRetentionPolicies(a.ctx, backupRG, backupMI, "sales")
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("list = %+v, %v; want the default policy alone", list, err)
	}

	// Azure's answer to the PUT: 202, Azure-AsyncOperation and Location of the
	// managedShortTermRetentionPolicy kind, Retry-After; the operation's result is the policy.
	op, err := a.c.BeginSetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "sales", 14)
	if err != nil {
		t.Fatal(err)
	}
	h := op.First.Header
	if op.First.Status != http.StatusAccepted || !strings.Contains(h.Get("Azure-AsyncOperation"), "/managedShortTermRetentionPolicyAzureAsyncOperation/") ||
		!strings.Contains(h.Get("Location"), "/managedShortTermRetentionPolicyOperationResults/") || h.Get("Retry-After") == "" {
		t.Errorf("PUT = %d with headers %v, want 202 with the operation's URLs", op.First.Status, h)
	}
	var first map[string]any
	if err := json.Unmarshal(op.First.Body, &first); err != nil || first["operation"] != "AlterManagedDatabase" {
		t.Errorf("PUT body = %s, want Azure's operation name AlterManagedDatabase", op.First.Body)
	}
	st, _, err := a.c.PollStatus(a.ctx, op.StatusURL(), nil)
	if err != nil || st.Status != arm.StatusSucceeded {
		t.Fatalf("operation status = %+v, %v; want Succeeded", st, err)
	}
	res, err := a.raw("GET", h.Get("Location"), nil)
	var p fogclient.ShortTermRetentionPolicy
	if err != nil || json.Unmarshal(res.Body, &p) != nil || p.ID != id || p.Properties.RetentionDays == nil || *p.Properties.RetentionDays != 14 {
		t.Errorf("operation result = %v, %v; want the policy with 14 days", res, err)
	}
	if got, err := a.c.GetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "sales"); err != nil || *got.Properties.RetentionDays != 14 {
		t.Errorf("GET after PUT 14 = %+v, %v", got, err)
	}

	// The instance keeps the longest of its databases' retentions, hr counting Azure's 7
	// while it has no policy of its own; the record and the spec change together.
	for _, step := range []struct {
		db       string
		days     int
		instance int
	}{
		{"", 0, 14}, // after sales 14
		{"sales", 3, 7},
		{"hr", 2, 3},
		{"hr", 1, 3},
		{"sales", 1, 1},
		{"sales", 35, 35},
	} {
		if step.db != "" {
			p, err := a.c.SetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, step.db, step.days)
			if err != nil || p == nil || *p.Properties.RetentionDays != step.days {
				t.Fatalf("set %s to %d = %+v, %v", step.db, step.days, p, err)
			}
		}
		if m := a.record(); m.BackupRetentionDays != step.instance {
			t.Errorf("after %s %d: the instance's record keeps %d days, want %d", step.db, step.days, m.BackupRetentionDays, step.instance)
		}
		if got := a.specRetention(); got != step.instance {
			t.Errorf("after %s %d: the spec asks the agent for %d days, want %d", step.db, step.days, got, step.instance)
		}
	}

	// PATCH changes what it sends and keeps the rest.
	if _, err := a.raw("PATCH", a.c.ShortTermRetentionPath(backupRG, backupMI, "hr", "default"), map[string]any{"properties": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.c.GetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "hr"); err != nil || *got.Properties.RetentionDays != 1 {
		t.Errorf("after an empty PATCH, hr = %+v, %v; want 1 kept", got, err)
	}
	if _, err := a.raw("PATCH", a.c.ShortTermRetentionPath(backupRG, backupMI, "hr", "default"), map[string]any{"properties": map[string]any{"retentionDays": 21}}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.c.GetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "hr"); err != nil || *got.Properties.RetentionDays != 21 {
		t.Errorf("after PATCH 21, hr = %+v, %v", got, err)
	}

	// Each accepted PUT and PATCH is in the activity log, ended.
	ev, err := a.c.ListActivityLog(a.ctx, "eventTimestamp ge '"+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+"' and resourceGroupName eq '"+backupRG+"'")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ev {
		if e.OperationName.Value == "Microsoft.Sql/managedInstances/databases/backupShortTermRetentionPolicies/write" && e.Status.Value == "Succeeded" {
			n++
		}
	}
	if n != 8 {
		t.Errorf("the activity log has %d succeeded policy writes, want 8", n)
	}
}

// A bad retention is Azure's 400 InvalidBackupRetentionPeriod with the range and changes
// nothing; a policy of a database or an instance that does not exist is the 404 the
// database's GET answers; the one policy is "default".
func TestShortTermRetentionErrors(t *testing.T) {
	a := newBackupAPI(t)
	path := a.c.ShortTermRetentionPath(backupRG, backupMI, "sales", "default")
	for _, body := range []string{
		`{"properties":{"retentionDays":0}}`,
		`{"properties":{"retentionDays":36}}`,
		`{"properties":{"retentionDays":7.5}}`,
		`{"properties":{"retentionDays":"14"}}`,
		`{"properties":{"retentionDays":-1}}`,
		`{"properties":{}}`,
		`{"properties":{"retentionDays":null}}`,
	} {
		_, err := a.raw("PUT", path, json.RawMessage(body))
		status, code, msg := errorOf(err)
		if status != http.StatusBadRequest || code != "InvalidBackupRetentionPeriod" || !strings.Contains(msg, "between 1 and 35") {
			t.Errorf("PUT %s = %d %s %q, want 400 InvalidBackupRetentionPeriod giving the range 1 to 35", body, status, code, msg)
		}
	}
	if _, err := a.raw("PATCH", path, json.RawMessage(`{"properties":{"retentionDays":36}}`)); func() string { _, c, _ := errorOf(err); return c }() != "InvalidBackupRetentionPeriod" {
		t.Errorf("PATCH 36 = %v, want InvalidBackupRetentionPeriod", err)
	}
	if m := a.record(); m.BackupRetentionDays != 7 || a.specRetention() != 0 {
		t.Errorf("refused PUTs changed the instance: record %d days, spec %d", m.BackupRetentionDays, a.specRetention())
	}
	if got, err := a.c.GetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "sales"); err != nil || *got.Properties.RetentionDays != 7 {
		t.Errorf("policy after refused PUTs = %+v, %v; want 7", got, err)
	}

	// A database that does not exist: the database's GET answers 404 ResourceNotFound, and so
	// does every request on its policy.
	_, dbErr := a.c.GetDatabase(a.ctx, backupRG, backupMI, "nope")
	dbStatus, dbCode, _ := errorOf(dbErr)
	if dbStatus != http.StatusNotFound || dbCode == "" {
		t.Fatalf("GET of a missing database = %v, want a 404", dbErr)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"PUT", func() error {
			_, err := a.c.BeginSetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "nope", 14)
			return err
		}},
		{"GET", func() error {
			_, err := a.c.GetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "nope")
			return err
		}},
		{"list", func() error {
			_, err := a.c.ListShortTermRetentionPolicies(a.ctx, backupRG, backupMI, "nope")
			return err
		}},
		{"PUT on a system database", func() error {
			_, err := a.c.BeginSetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, "postgres", 14)
			return err
		}},
	} {
		if status, code, _ := errorOf(tc.call()); status != dbStatus || code != dbCode {
			t.Errorf("%s of a missing database's policy = %d %s, want the database GET's %d %s", tc.name, status, code, dbStatus, dbCode)
		}
	}
	_, miErr := a.c.GetManagedInstance(a.ctx, backupRG, "nope")
	miStatus, miCode, _ := errorOf(miErr)
	if _, err := a.c.BeginSetShortTermRetentionPolicy(a.ctx, backupRG, "nope", "sales", 14); miStatus != http.StatusNotFound || func() bool { s, c, _ := errorOf(err); return s != miStatus || c != miCode }() {
		t.Errorf("PUT on a missing instance = %v, want the instance GET's %d %s", err, miStatus, miCode)
	}

	// The one policy is named default.
	if _, err := a.raw("GET", a.c.ShortTermRetentionPath(backupRG, backupMI, "sales", "weekly"), nil); func() int { s, _, _ := errorOf(err); return s }() != http.StatusNotFound {
		t.Errorf("GET of policy weekly = %v, want 404", err)
	}
	if _, err := a.raw("PUT", a.c.ShortTermRetentionPath(backupRG, backupMI, "sales", "weekly"), map[string]any{"properties": map[string]any{"retentionDays": 14}}); func() string { _, c, _ := errorOf(err); return c }() != "InvalidParameterValue" {
		t.Errorf("PUT of policy weekly = %v, want InvalidParameterValue", err)
	}
}

// A new database keeps Azure's default of 7 days until a policy says otherwise: when every
// database of an instance keeps less, its create raises the instance's retention to 7, with
// the spec, in the transaction that accepts it.
func TestNewDatabaseRaisesRetention(t *testing.T) {
	a := newBackupAPI(t)
	for _, db := range []string{"sales", "hr"} {
		if _, err := a.c.SetShortTermRetentionPolicy(a.ctx, backupRG, backupMI, db, 2); err != nil {
			t.Fatal(err)
		}
	}
	if m := a.record(); m.BackupRetentionDays != 2 || a.specRetention() != 2 {
		t.Fatalf("with both databases at 2 days: record %d, spec %d; want 2", m.BackupRetentionDays, a.specRetention())
	}
	// No agent runs here: the create is accepted and stays in progress.
	if _, err := a.c.BeginCreateDatabase(a.ctx, backupRG, backupMI, "orders", fogclient.Database{}); err != nil {
		t.Fatal(err)
	}
	if m := a.record(); m.BackupRetentionDays != 7 || a.specRetention() != 7 {
		t.Errorf("after a database's create: record %d, spec %d; want 7", m.BackupRetentionDays, a.specRetention())
	}
}
