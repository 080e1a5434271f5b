package pgbackrest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/blob"
	"github.com/fogdb/fog/internal/blob/azuritetest"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
)

// TestAzureRepository is a stanza in Azure Blob Storage as docs/backups.md lays it out, against
// Azurite over TLS with a CA of the test's: root makes a container per stanza with the
// account's key and hands the instance only a SAS for its own container, in a configuration
// its group alone reads; pgBackRest, as the instance's OS user, creates the stanza, archives
// the real WAL of a real PostgreSQL, takes a full backup, verifies the repository and
// restores to a point in time with exactly the rows committed before it. The SAS of stanza
// A's container can neither list nor read stanza B's, and no error quotes it.
func TestAzureRepository(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := pgbackrest.FindBinary(""); err != nil {
		t.Skipf("pgBackRest is not installed (CI installs Debian's pgbackrest): %v", err)
	}
	started := time.Now()
	az := azuritetest.Start(ctx, t)
	const stanzaA, stanzaB = "azure-a", "azure-b"
	for _, c := range []string{stanzaA, stanzaB} {
		// One container per stanza, named as the stanza (Fog's stanzas are UIDs, valid
		// container names).
		if err := az.Client.CreateContainer(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	sasA, err := az.Client.ContainerSAS(stanzaA, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sasB, err := az.Client.ContainerSAS(stanzaB, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Azurite, containers and SAS: %v", time.Since(started).Round(time.Millisecond))
	// pgBackRest redacts secure options and a SAS's signature in what it prints; whatever a
	// failure here prints goes through redact too, so that no log of a run holds a credential.
	fatal := func(err error) {
		t.Helper()
		t.Fatal(redact(err.Error(), sasA, sasB, az.Key))
	}

	azureRepo := func(dir, container, sas string) []pgbackrest.Repo {
		// Bundled: an object store creates objects slowly, and a small cluster is mostly
		// small files.
		return []pgbackrest.Repo{{Type: pgbackrest.Azure, Path: "/repo", Retention: pgbackrest.Retention{FullCount: 2}, Bundle: true,
			Azure:   &pgbackrest.AzureStore{Account: azuritetest.Account, Container: container, Key: sas, SAS: true, PathStyle: true},
			Storage: &pgbackrest.Storage{Host: az.Host, Port: az.Port, CAFile: filepath.Join(dir, "azure-ca.crt")}}}
	}
	t0 := time.Now()
	in := startInstanceWith(ctx, t, instanceOptions{Stanza: stanzaA, Repos: func(dir string) []pgbackrest.Repo {
		if err := os.WriteFile(filepath.Join(dir, "azure-ca.crt"), az.CAPEM, 0o644); err != nil {
			fatal(err)
		}
		return azureRepo(dir, stanzaA, sasA)
	}})
	d := in.d
	t.Logf("cluster: %v", time.Since(t0).Round(time.Millisecond))
	if fi, err := os.Stat(d.Config); err != nil || (os.Geteuid() == 0 && fi.Mode().Perm() != 0o640) {
		t.Errorf("the configuration holding the SAS: %v, %v; want 0640", fi.Mode(), err)
	}

	t0 = time.Now()
	if err := d.StanzaCreate(ctx); err != nil {
		fatal(err)
	}
	// check switches a WAL segment and waits for archive_command to push it into the
	// container: archiving as the instance's user, with the SAS.
	if err := d.Check(ctx); err != nil {
		fatal(err)
	}
	t.Logf("stanza-create and check (archive-push of a switched segment): %v", time.Since(t0).Round(time.Millisecond))

	sys := in.system(ctx, t, "postgres")
	if err := postgres.CreateDatabase(ctx, sys, "app", postgres.SystemUser); err != nil {
		fatal(err)
	}
	app := in.system(ctx, t, "app")
	exec(ctx, t, app, "CREATE TABLE public.t (id int PRIMARY KEY, phase text NOT NULL)")
	exec(ctx, t, app, "INSERT INTO public.t SELECT g, 'before the full backup' FROM generate_series(1, 100) g")
	t0 = time.Now()
	full, err := d.Backup(ctx, pgbackrest.Full, pgbackrest.BackupOptions{})
	if err != nil {
		fatal(err)
	}
	t.Logf("full backup %s: %v", full, time.Since(t0).Round(time.Millisecond))

	exec(ctx, t, app, "INSERT INTO public.t SELECT g, 'after the full backup' FROM generate_series(101, 200) g")
	var target time.Time
	if err := app.QueryRow(ctx, "SELECT pg_catalog.clock_timestamp()").Scan(&target); err != nil {
		fatal(err)
	}
	// Commit timestamps have microseconds; the next commit is surely later than target.
	time.Sleep(20 * time.Millisecond)
	exec(ctx, t, app, "INSERT INTO public.t SELECT g, 'after the target' FROM generate_series(201, 300) g")
	exec(ctx, t, app, "DROP TABLE public.t")
	// The WAL past the target reaches the container: switched and pushed by archive_command.
	var seg string
	if err := sys.QueryRow(ctx, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())").Scan(&seg); err != nil {
		fatal(err)
	}
	t0 = time.Now()
	if err := d.WaitArchived(ctx, seg, 100*time.Millisecond); err != nil {
		fatal(err)
	}
	t.Logf("WAL %s archived: %v", seg, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if out, err := d.Verify(ctx); err != nil {
		t.Errorf("verify: %v\n%s", err, redact(out, sasA, sasB, az.Key))
	}
	t.Logf("verify: %v", time.Since(t0).Round(time.Millisecond))

	// The restore job's configuration: the same container and SAS, a spool and lock of its
	// own, no async archive-get.
	for _, sub := range []string{"restore-spool", "restore-lock"} {
		if err := in.r.MkdirOwned(filepath.Join(in.dir, sub), 0o700); err != nil {
			fatal(err)
		}
	}
	rcfg := in.cfg
	rcfg.ArchiveAsync, rcfg.SpoolPath, rcfg.LockPath = false, filepath.Join(in.dir, "restore-spool"), filepath.Join(in.dir, "restore-lock")
	rd := *d
	rd.Config = filepath.Join(in.dir, "restore.conf")
	in.writeConf(t, rd.Config, rcfg)
	scratch := &postgres.Cluster{Dir: filepath.Join(filepath.Dir(in.c.Dir), "scratch"), SocketDir: postgres.SocketDirFor(in.c.Dir + "/scratch"),
		Host: "127.0.0.1", Port: freePort(t, "127.0.0.1"), R: in.r}
	if err := in.r.MkdirOwned(scratch.DataDir(), 0o700); err != nil {
		fatal(err)
	}
	t0 = time.Now()
	if err := rd.Restore(ctx, pgbackrest.RestoreOptions{Path: scratch.DataDir(), Set: full, Type: "time",
		Target: target.UTC().Format("2006-01-02 15:04:05.999999-07"), TargetAction: "pause", ArchiveOff: true}); err != nil {
		fatal(err)
	}
	if err := scratch.WriteConfig(in.pgConfig(t, scratch, nil)); err != nil {
		fatal(err)
	}
	if err := scratch.Start(ctx); err != nil {
		t.Error(scratch.LogTail(20))
		fatal(err)
	}
	t.Cleanup(func() { scratch.Stop(context.Background(), "immediate") })
	sapp := connect(ctx, t, scratch, "app")
	waitPaused(ctx, t, sapp)
	checkRows(ctx, t, scratch, sapp)
	t.Logf("restore to the target and recovery (WAL fetched from the container): %v", time.Since(t0).Round(time.Millisecond))

	// Stanza B's container, written with B's SAS, is out of reach of A's: pgBackRest
	// configured with A's SAS for B's container, and the REST API asked directly.
	put(ctx, t, az, stanzaB, "repo/secret", sasB, http.StatusCreated)
	cross := in.cfg
	cross.Repos = azureRepo(in.dir, stanzaB, sasA)
	cd := *d
	cd.Config = filepath.Join(in.dir, "cross.conf")
	in.writeConf(t, cd.Config, cross)
	info, err := cd.Info(ctx, "")
	if err == nil && info.Status.Code == pgbackrest.StatusOK {
		t.Errorf("info of stanza B's container with A's SAS = %+v, want refused", info.Status)
	}
	// info reports an unreadable repository in its status ("other"), with the cause in the
	// repository's own.
	msg := ""
	if err != nil {
		msg = err.Error()
	} else {
		for _, r := range info.Repos {
			msg += r.Status.Message + " "
		}
	}
	if !strings.Contains(msg, "403") {
		t.Errorf("info of stanza B's container with A's SAS: %q, want HTTP 403", redact(msg, sasA, sasB, az.Key))
	}
	checkRedacted(t, "pgBackRest's error", msg, sasA, sasB, az.Key)
	for _, u := range []string{
		az.Endpoint() + "/" + stanzaB + "?restype=container&comp=list&" + sasA,
		az.Endpoint() + "/" + stanzaB + "/repo/secret?" + sasA,
		az.Endpoint() + "/" + stanzaB + "/repo/archive/" + stanzaB + "/archive.info?" + sasA,
	} {
		if got := get(ctx, t, az, u); got != http.StatusForbidden {
			t.Errorf("GET %s with A's SAS: HTTP %d, want 403", strings.SplitN(u, "?", 2)[0], got)
		}
	}
	if got := get(ctx, t, az, az.Endpoint()+"/"+stanzaA+"?restype=container&comp=list&"+sasA); got != http.StatusOK {
		t.Errorf("A's SAS lists its own container: HTTP %d, want 200", got)
	}
	// pgBackRest's own log files (the instance's user's, at level info) name the options of
	// every command, and redact the SAS.
	logs, err := filepath.Glob(filepath.Join(in.dir, "log", "*"))
	if err != nil || len(logs) == 0 {
		t.Errorf("pgBackRest's log files: %v, %v; want some", logs, err)
	}
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkRedacted(t, "pgBackRest's log "+filepath.Base(f), string(b), sasA, sasB, az.Key)
	}
	t.Logf("total: %v", time.Since(started).Round(time.Millisecond))
}

func get(ctx context.Context, t *testing.T, az *azuritetest.Azurite, u string) int {
	t.Helper()
	return send(ctx, t, az, http.MethodGet, u, "")
}

func put(ctx context.Context, t *testing.T, az *azuritetest.Azurite, container, name, sas string, want int) {
	t.Helper()
	if got := send(ctx, t, az, http.MethodPut, az.Endpoint()+"/"+container+"/"+name+"?"+sas, "data"); got != want {
		t.Fatalf("PUT %s/%s: HTTP %d, want %d", container, name, got, want)
	}
}

// send makes a request whose URL carries a SAS; a failure is reported without the URL.
func send(ctx context.Context, t *testing.T, az *azuritetest.Azurite, method, u, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal("a request with a SAS: malformed")
	}
	req.Header.Set("x-ms-version", blob.Version)
	if method == http.MethodPut {
		req.Header.Set("x-ms-blob-type", "BlockBlob")
	}
	resp, err := az.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		t.Fatalf("%s of a blob with a SAS: %v", method, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode
}

// checkRedacted fails the test if s holds a credential or a SAS's signature, without
// printing either.
func checkRedacted(t *testing.T, what, s string, secrets ...string) {
	t.Helper()
	if redact(s, secrets...) != s {
		t.Errorf("%s holds a credential", what)
	}
}

// redact replaces the credentials, and each SAS's signature, in s.
func redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "<redacted>")
		if q, err := url.ParseQuery(sec); err == nil && q.Get("sig") != "" {
			s = strings.ReplaceAll(s, q.Get("sig"), "<redacted>")
			s = strings.ReplaceAll(s, url.QueryEscape(q.Get("sig")), "<redacted>")
		}
	}
	return s
}
