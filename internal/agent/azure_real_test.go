package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/blob"
	"github.com/fogdb/fog/internal/blob/azuritetest"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// azureAgent starts Azurite and returns the agent settings of a repository there, as an
// operator gives them: the account key in a file of mode 0600, the emulator's CA.
func azureAgent(ctx context.Context, t *testing.T) (*azuritetest.Azurite, func(*agent.Config)) {
	t.Helper()
	az := azuritetest.Start(ctx, t)
	secrets := t.TempDir()
	keyFile, caFile := filepath.Join(secrets, "account.key"), filepath.Join(secrets, "azurite-ca.crt")
	if err := os.WriteFile(keyFile, []byte(az.Key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, az.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return az, func(c *agent.Config) {
		c.Backup.RepoType = agent.RepoAzure
		c.Backup.Azure = agent.AzureConfig{Account: azuritetest.Account, KeyFile: keyFile, Host: az.Host, Port: az.Port, CAFile: caFile}
	}
}

// syncBuffer is a bytes.Buffer the agent's goroutines write and the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// configSAS reads the SAS the instance's pgBackRest configuration holds, and checks the file
// holds no account key.
func configSAS(t *testing.T, instDir, key string) (sas string, conf string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(instDir, "pgbackrest.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf = string(b)
	if strings.Contains(conf, key) {
		t.Fatal("the instance's pgbackrest.conf holds the account key")
	}
	sc := bufio.NewScanner(strings.NewReader(conf))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "repo1-azure-key="); ok {
			sas = v
		}
	}
	if sas == "" {
		t.Fatal("the instance's pgbackrest.conf holds no SAS")
	}
	return sas, conf
}

// sasExpiry is a SAS's expiry (se).
func sasExpiry(t *testing.T, sas string) time.Time {
	t.Helper()
	q, err := url.ParseQuery(sas)
	if err != nil {
		t.Fatal("the SAS is not a query string")
	}
	e, err := time.Parse(time.RFC3339, q.Get("se"))
	if err != nil {
		t.Fatalf("the SAS's expiry %q: %v", q.Get("se"), err)
	}
	return e
}

// secretsOf are the strings no log, status or error may hold: the key, a SAS and its
// signature (raw and escaped).
func secretsOf(key string, sas ...string) []string {
	out := []string{key}
	for _, s := range sas {
		out = append(out, s)
		if q, err := url.ParseQuery(s); err == nil && q.Get("sig") != "" {
			out = append(out, q.Get("sig"), url.QueryEscape(q.Get("sig")))
		}
	}
	return out
}

func checkNoSecret(t *testing.T, what, s string, secrets []string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s holds a credential", what)
			return
		}
	}
}

// TestAzureRepositoryOfARealAgent: an agent started with --backup-repo-type azure against
// Azurite gives the instance a container of its own (<prefix><region>-<stanza>, recording
// whose it is) and writes only a SAS for it into the instance's configuration (root's, the
// instance's group, 0640); the instance archives its WAL there, takes a full backup that the
// agent verifies, a database is restored to a point in time with exactly the rows committed
// before it, and a dropped database as it was when dropped. The status names the repository and its container; neither the
// agent's log, nor the status, nor pgBackRest's logs hold the key or the SAS.
func TestAzureRepositoryOfARealAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	started := time.Now()
	az, edit := azureAgent(ctx, t)
	var logs syncBuffer
	agentLogs.Store(t, &logs)
	t.Cleanup(func() { agentLogs.Delete(t) })
	uid := "b7a1c0de-0000-4000-8000-0000000000a2"
	w := newRestoreWorld(ctx, t, uid, edit)
	t.Logf("Azurite, instance, full backup and writes: %v", time.Since(started).Round(time.Millisecond))

	st := waitStatus(ctx, t, w.st, uid, "the full backup verified", func(s instance.Status) bool {
		return s.Backup != nil && s.Backup.Verify != nil && s.Backup.Verify.Seq == 1
	})
	if st.Backup.Verify.Error != "" || st.Backup.Health != instance.BackupHealthy || len(st.Backup.Backups) != 1 {
		t.Fatalf("after the full backup: verify %+v, health %s, backups %d", *st.Backup.Verify, st.Backup.Health, len(st.Backup.Backups))
	}
	container := agent.ContainerName("fog-", "eastus", uid, 0)
	r := st.Backup.Repository
	if r == nil || r.Type != "azure" || r.Account != azuritetest.Account || r.Container != container ||
		r.CredentialExpiry.Before(time.Now().Add(47*time.Hour)) || r.CredentialExpiry.After(time.Now().Add(49*time.Hour)) {
		t.Errorf("Status.Backup.Repository = %+v, want azure, container %s, a credential expiring in 48h", r, container)
	}
	meta, ok, err := az.Client.ContainerMetadata(ctx, container)
	if err != nil || !ok || meta["fogowner"] != uid || meta["fogstanza"] != uid {
		t.Errorf("container %s: exists %v, metadata %v, %v; want the instance's", container, ok, meta, err)
	}

	// The configuration: root's, readable by the instance's group only, with the SAS of the
	// instance's container and no key.
	instDir := filepath.Join(w.dir, "instances", uid)
	sas, conf := configSAS(t, instDir, az.Key)
	for _, want := range []string{"repo1-type=azure", "repo1-azure-container=" + container, "repo1-azure-key-type=sas", "repo1-azure-uri-style=path",
		"repo1-storage-host=localhost", "repo1-storage-ca-file=" + filepath.Join(instDir, "pgbackrest-ca.crt"), "repo1-bundle=y", "archive-async=y"} {
		if !strings.Contains(conf, want) {
			t.Errorf("pgbackrest.conf lacks %q", want)
		}
	}
	if q, _ := url.ParseQuery(sas); q.Get("sr") != "c" || q.Get("sp") != "racwdl" {
		t.Errorf("the SAS is not a container's: sr=%s sp=%s", q.Get("sr"), q.Get("sp"))
	}
	for _, f := range []string{"pgbackrest.conf", "pgbackrest-ca.crt"} {
		fi, err := os.Stat(filepath.Join(instDir, f))
		if err != nil {
			t.Fatal(err)
		}
		sys := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o640 || (os.Geteuid() == 0 && (sys.Uid != 0 || sys.Gid == 0)) {
			t.Errorf("%s: mode %o, owner %d:%d; want 0640, root's, the instance's group", f, fi.Mode().Perm(), sys.Uid, sys.Gid)
		}
	}
	if _, err := os.Stat(filepath.Join(w.dir, "backups", "eastus", uid)); err == nil {
		t.Errorf("a posix stanza directory was made for an instance whose repository is in Azure")
	}

	c, _, took := w.restore("restore-az", "app_restored")
	if c.Error != "" || c.Progress != 100 {
		t.Fatalf("restore: %+v", c)
	}
	t.Logf("restore from the container: %v", took.Round(time.Millisecond))
	w.checkRestored("app_restored")
	w.checkNothingLeft("restore-az")

	// A dropped database, restored from the container as it was when dropped.
	w.adminExec("app", "INSERT INTO public.later SELECT generate_series(11, 20)")
	if _, err := w.conn("postgres").Exec(ctx, "DROP DATABASE app WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(ctx, t, w.st, uid, "the drop found in the WAL", func(s instance.Status) bool { return len(s.Dropped) == 1 })
	d := st.Dropped[0]
	cmd := instance.Command{ID: "restore-dropped", InstanceUID: uid, Kind: instance.CmdRestoreDatabase, SourceDatabase: "app",
		Database: "app_dropped", Owner: "admin1", Time: d.Deleted.UTC(), DropLSN: d.LSN, Dropped: d.Deleted, Created: time.Now().UTC()}
	if err := store.Put(ctx, w.st, instance.CommandKey("eastus", cmd.ID), cmd); err != nil {
		t.Fatal(err)
	}
	if c, _, took := w.restore(cmd.ID, ""); c.Error != "" {
		t.Fatalf("the dropped database's restore: %s", c.Error)
	} else {
		t.Logf("the dropped database's restore from the container: %v", took.Round(time.Millisecond))
	}
	var n int
	if err := w.conn("app_dropped").QueryRow(ctx, "SELECT count(*) FROM public.later").Scan(&n); err != nil || n != 20 {
		t.Errorf("the dropped database restored has %d rows (%v), want the 20 committed before the drop", n, err)
	}
	w.checkNothingLeft(cmd.ID)

	secrets := secretsOf(az.Key, sas)
	checkNoSecret(t, "the agent's log", logs.String(), secrets)
	if !strings.Contains(logs.String(), "backup done") {
		t.Errorf("the agent's log was not captured")
	}
	st = waitStatus(ctx, t, w.st, uid, "the status", func(instance.Status) bool { return true })
	js, _ := json.Marshal(st)
	checkNoSecret(t, "the instance's status", string(js), secrets)
	pbLogs, _ := filepath.Glob(filepath.Join(instDir, "pgbackrest", "log", "*"))
	if len(pbLogs) == 0 {
		t.Errorf("no pgBackRest log files")
	}
	for _, f := range pbLogs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkNoSecret(t, "pgBackRest's log "+filepath.Base(f), string(b), secrets)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}

// TestAzureSASRenewal: once the SAS in an instance's configuration has less than a day left
// (the agent's clock moved 25 hours on), the agent's next observation of the instance writes
// a new one, valid 48 hours from then, into the configuration, and the instance archives and
// backs up with it.
func TestAzureSASRenewal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	_, edit := azureAgent(ctx, t)
	var shift atomic.Int64
	dir, bolt, spec := backupWorld(ctx, t, edit, func(c *agent.Config) {
		c.Backup.Azure.Now = func() time.Time { return time.Now().Add(time.Duration(shift.Load())) }
	})
	uid := spec.UID
	waitStatus(ctx, t, bolt, uid, "Ready with the stanza created", func(s instance.Status) bool {
		return s.Phase == instance.PhaseReady && s.Backup != nil && s.Backup.Stanza == uid && s.Backup.Repository != nil
	})
	instDir := filepath.Join(dir, "instances", uid)
	key := readKey(t, edit)
	first, _ := configSAS(t, instDir, key)
	firstExpiry := sasExpiry(t, first)

	// Nothing is due yet: the configuration keeps its SAS across observations.
	time.Sleep(2 * time.Second)
	if again, _ := configSAS(t, instDir, key); again != first {
		t.Fatalf("the SAS was replaced with two days left")
	}

	shift.Store(int64(25 * time.Hour))
	var renewed string
	for renewed == "" {
		if s, _ := configSAS(t, instDir, key); s != first {
			renewed = s
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the SAS was not renewed after the clock moved 25 hours on")
		case <-time.After(200 * time.Millisecond):
		}
	}
	if e := sasExpiry(t, renewed); e.Sub(firstExpiry) < 24*time.Hour {
		t.Errorf("the renewed SAS expires at %s, the first at %s: want about 25 hours later", e, firstExpiry)
	}
	waitStatus(ctx, t, bolt, uid, "the renewed expiry published", func(s instance.Status) bool {
		return s.Backup.Repository != nil && s.Backup.Repository.CredentialExpiry.After(firstExpiry.Add(24*time.Hour))
	})

	// The new SAS works: a backup (and the WAL it waits for) goes into the container.
	askBackup(ctx, t, bolt, &spec, 1, instance.BackupFull)
	st := waitStatus(ctx, t, bolt, uid, "backup 1 done and verified", func(s instance.Status) bool {
		return s.Backup != nil && s.Backup.Seq == 1 && (s.Backup.Error != "" || s.Backup.Verify != nil && s.Backup.Verify.Seq == 1)
	})
	if st.Backup.Error != "" || len(st.Backup.Backups) != 1 || st.Backup.Verify == nil || st.Backup.Verify.Error != "" {
		t.Fatalf("a backup with the renewed SAS: %+v", derefBackup(st.Backup))
	}
	if s, _ := configSAS(t, instDir, key); s != renewed {
		t.Errorf("the SAS was replaced again while it had 48 hours left")
	}
}

// readKey reads the account key the test's agent settings name.
func readKey(t *testing.T, edit func(*agent.Config)) string {
	t.Helper()
	var c agent.Config
	edit(&c)
	b, err := os.ReadFile(c.Backup.Azure.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestAzureContainersAreTheInstances: an instance is never handed a container that is not
// its own for its stanza (the account key alone reads and writes the record of whose it is;
// a container SAS can do neither): another instance's of the same stanza name, one of
// another stanza whose name ends alike, one made by hand, one set aside. Each is passed
// over for the next name, and the same choice is made again by an agent that restarted.
func TestAzureContainersAreTheInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	az, edit := azureAgent(ctx, t)
	var c agent.Config
	edit(&c)
	const a, b, s = "uid-a", "uid-b", "stanza"
	want := func(uid, stanza, name string) {
		t.Helper()
		got, err := agent.AzureContainer(ctx, c.Backup, "eastus", uid, stanza)
		if err != nil || got != name {
			t.Fatalf("the container of %s's stanza %s = %q, %v; want %q", uid, stanza, got, err, name)
		}
	}
	want(a, s, "fog-eastus-stanza")
	want(a, s, "fog-eastus-stanza") // the agent restarted
	want(b, s, "fog-eastus-stanza-1")
	want(b, s+"-1", "fog-eastus-stanza-1-1")
	if err := az.Client.CreateContainer(ctx, "fog-eastus-byhand"); err != nil {
		t.Fatal(err)
	}
	want(a, "byhand", "fog-eastus-byhand-1")

	aside, err := agent.AzureSetAside(ctx, c.Backup, "eastus", a, s)
	if err != nil || aside != "fog-eastus-stanza" {
		t.Fatalf("set aside %q, %v; want fog-eastus-stanza", aside, err)
	}
	want(a, s, "fog-eastus-stanza-2")
	meta, _, err := az.Client.ContainerMetadata(ctx, "fog-eastus-stanza")
	if err != nil || meta["fogowner"] != a || meta["fogaside"] == "" {
		t.Errorf("the container set aside: %v, %v; want still %s's, marked aside", meta, err, a)
	}

	// The SAS an instance holds for its container can neither rewrite nor read whose it is.
	sas, err := az.Client.ContainerSAS("fog-eastus-stanza-1", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodPut, http.MethodGet} {
		req, err := http.NewRequestWithContext(ctx, method, az.Endpoint()+"/fog-eastus-stanza-1?restype=container&comp=metadata&"+sas, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-ms-version", blob.Version)
		req.Header.Set("x-ms-meta-fogowner", b)
		resp, err := az.HTTP.Do(req)
		if err != nil {
			t.Fatal("a request with a SAS failed")
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s of the container's metadata with its SAS: HTTP %d, want 403", method, resp.StatusCode)
		}
	}
}
