package pgbackrest

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func posixConfig() Config {
	return Config{
		Stanza: "i-3f2a",
		Repos:  []Repo{{Path: "/var/lib/fog/r1/backups/i-3f2a", Retention: Retention{FullDays: 7, Diff: 7}}},
		PG: PG{Path: "/var/lib/fog/r1/i-3f2a/pgdata", SocketPath: "/tmp/fog-sockets-0/fog-01", Port: 5432,
			User: "fog_backup", Database: "fog_system"},
		ArchiveAsync: true, SpoolPath: "/var/lib/fog/r1/spool/i-3f2a", ArchivePushQueueMax: 1 << 30,
		ProcessMax: 2, CompressType: "zst", LockPath: "/var/lib/fog/r1/lock/i-3f2a", StartFast: true,
	}
}

func TestRenderPosix(t *testing.T) {
	got, err := posixConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	want := `# Written by Fog. Do not edit: it is rewritten on every reconcile.
[global]
repo1-type=posix
repo1-path=/var/lib/fog/r1/backups/i-3f2a
repo1-retention-full-type=time
repo1-retention-full=7
repo1-retention-diff=7
archive-async=y
spool-path=/var/lib/fog/r1/spool/i-3f2a
archive-push-queue-max=1073741824
process-max=2
compress-type=zst
lock-path=/var/lib/fog/r1/lock/i-3f2a
log-level-file=off
start-fast=y

[i-3f2a]
pg1-path=/var/lib/fog/r1/i-3f2a/pgdata
pg1-socket-path=/tmp/fog-sockets-0/fog-01
pg1-port=5432
pg1-user=fog_backup
pg1-database=fog_system
`
	if string(got) != want {
		t.Errorf("Render() =\n%s\nwant\n%s", got, want)
	}
}

func TestRenderObjectStores(t *testing.T) {
	c := posixConfig()
	c.Repos = []Repo{
		{Type: Azure, Path: "/fog", Azure: &AzureStore{Account: "devstoreaccount1", Container: "i-3f2a", Key: testSAS, SAS: true, PathStyle: true},
			Storage: &Storage{Host: "localhost", Port: 10000, CAFile: "/var/lib/fog/azurite-ca.crt"}, Retention: Retention{FullCount: 2}},
		{Type: S3, S3: &S3Store{Bucket: "fog-west", Endpoint: "s3.example.test", Region: "us-west-2", Key: "AK", KeySecret: "SK", Token: "TOK", PathStyle: true},
			Storage: &Storage{CAFile: "/etc/fog/ca.crt"}, Bundle: true},
	}
	got, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"repo1-type=azure", "repo1-path=/fog", "repo1-retention-full-type=count", "repo1-retention-full=2",
		"repo1-azure-account=devstoreaccount1", "repo1-azure-container=i-3f2a", "repo1-azure-key=" + testSAS,
		"repo1-azure-key-type=sas", "repo1-azure-uri-style=path", "repo1-storage-host=localhost",
		"repo1-storage-port=10000", "repo1-storage-ca-file=/var/lib/fog/azurite-ca.crt", "repo1-storage-verify-tls=y",
		"repo2-type=s3", "repo2-path=/", "repo2-bundle=y", "repo2-s3-bucket=fog-west", "repo2-s3-endpoint=s3.example.test",
		"repo2-s3-region=us-west-2", "repo2-s3-key=AK", "repo2-s3-key-secret=SK", "repo2-s3-token=TOK",
		"repo2-s3-uri-style=path", "repo2-storage-ca-file=/etc/fog/ca.crt", "repo2-storage-verify-tls=y",
	} {
		if !strings.Contains(string(got), "\n"+line+"\n") {
			t.Errorf("Render() has no line %q:\n%s", line, got)
		}
	}
	if strings.Contains(string(got), "repo2-retention") || strings.Contains(string(got), "repo1-s3") {
		t.Errorf("Render() wrote options that were not asked for:\n%s", got)
	}
}

// testSAS is the shape of a service SAS for a container, as Azure's tools print it.
const testSAS = "sv=2020-12-06&spr=https&se=2026-12-05T22%3A43%3A00Z&sr=c&sp=racwdl&sig=c2lnbmF0dXJl"

// TestRenderAzureSharedKey: a shared key, once the operator accepted it, is written with its
// type; TLS verification off is written for a store on loopback with a SAS.
func TestRenderAzureSharedKey(t *testing.T) {
	c := posixConfig()
	c.Repos = []Repo{{Type: Azure, Azure: &AzureStore{Account: "fogwest", Container: "i-3f2a", Key: "a2V5"}, SharedCredentials: true},
		{Type: Azure, Azure: &AzureStore{Account: "devstoreaccount1", Container: "i-3f2a", Key: testSAS, SAS: true, PathStyle: true},
			Storage: &Storage{Host: "127.0.0.1", Port: 10000, SkipVerify: true}}}
	got, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"repo1-type=azure", "repo1-path=/", "repo1-azure-account=fogwest", "repo1-azure-key=a2V5",
		"repo1-azure-key-type=shared", "repo2-storage-host=127.0.0.1", "repo2-storage-verify-tls=n"} {
		if !strings.Contains(string(got), "\n"+line+"\n") {
			t.Errorf("Render() has no line %q:\n%s", line, got)
		}
	}
	if strings.Contains(string(got), "repo1-azure-uri-style") || strings.Contains(string(got), "repo1-storage") {
		t.Errorf("Render() wrote options that were not asked for:\n%s", got)
	}
}

// TestRenderBackupFromStandby renders the two configurations of a backup from a standby
// (docs/backups.md): the standby's, pg1 the primary through its TLS server and pg2 the local
// standby; and the primary's server, admitting the partner's identity for the stanza alone.
func TestRenderBackupFromStandby(t *testing.T) {
	c := posixConfig()
	c.ArchiveAsync = false
	c.Standby = &PG{Path: "/var/lib/fog/r2/i-9b/pgdata", SocketPath: "/tmp/fog-sockets-0/fog-02", Port: 5432, User: "fog_backup", Database: "fog_system"}
	c.PG.Remote = &Remote{Host: "i-3f2a.west.fog.test", Port: 8432, CAFile: "/r2/ca.crt", CertFile: "/r2/i-9b/replication.crt",
		KeyFile: "/r2/i-9b/replication.key", Config: "/r1/i-3f2a/pgbackrest-server.conf"}
	c.BackupStandby, c.NoArchiveCheck = true, true
	got, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"backup-standby=y", "archive-check=n", "pg1-path=/var/lib/fog/r1/i-3f2a/pgdata", "pg1-host=i-3f2a.west.fog.test",
		"pg1-host-type=tls", "pg1-host-port=8432", "pg1-host-ca-file=/r2/ca.crt", "pg1-host-cert-file=/r2/i-9b/replication.crt",
		"pg1-host-key-file=/r2/i-9b/replication.key", "pg1-host-config=/r1/i-3f2a/pgbackrest-server.conf",
		"pg2-path=/var/lib/fog/r2/i-9b/pgdata", "pg2-socket-path=/tmp/fog-sockets-0/fog-02", "pg2-port=5432", "pg2-user=fog_backup"} {
		if !strings.Contains(string(got), "\n"+line+"\n") {
			t.Errorf("Render() has no line %q:\n%s", line, got)
		}
	}

	srv := posixConfig()
	srv.Server = &Server{Address: "127.0.0.7", Port: 8432, CAFile: "/r1/ca.crt", CertFile: "/r1/i-3f2a/server.crt", KeyFile: "/r1/i-3f2a/server.key",
		Auth: map[string][]string{"repl.i-9b": {"i-3f2a"}}}
	got, err = srv.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"tls-server-address=127.0.0.7", "tls-server-port=8432", "tls-server-ca-file=/r1/ca.crt",
		"tls-server-cert-file=/r1/i-3f2a/server.crt", "tls-server-key-file=/r1/i-3f2a/server.key", "tls-server-auth=repl.i-9b=i-3f2a"} {
		if !strings.Contains(string(got), "\n"+line+"\n") {
			t.Errorf("Render() has no line %q:\n%s", line, got)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
	}{
		{"stanza with a slash", func(c *Config) { c.Stanza = "a/b" }},
		{"upper-case stanza", func(c *Config) { c.Stanza = "Abc" }},
		{"no repository", func(c *Config) { c.Repos = nil }},
		{"no data directory", func(c *Config) { c.PG.Path = "" }},
		{"shared spool", func(c *Config) { c.SpoolPath = "" }},
		{"shared locks", func(c *Config) { c.LockPath = "" }},
		{"posix without a path", func(c *Config) { c.Repos[0].Path = "" }},
		{"s3 without a bucket", func(c *Config) { c.Repos[0] = Repo{Type: S3, S3: &S3Store{Endpoint: "e", Region: "r"}} }},
		{"azure without a key", func(c *Config) { c.Repos[0] = Repo{Type: Azure, Azure: &AzureStore{Account: "acct", Container: "c1a"}} }},
		{"azure without a container", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Container = "" }) }},
		{"azure account in capitals", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Account = "Fog" }) }},
		{"azure container with a slash", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Container = "a/b" }) }},
		{"azure container with an underscore", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Container = "i_3f2a" }) }},
		{"azure container with two hyphens", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Container = "i--3f2a" }) }},
		{"azure container too short", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Container = "ab" }) }},
		{"azure path not absolute", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Path = "fog" }) }},
		{"azure shared key not accepted", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.SAS, r.Azure.Key = false, "a2V5" })
		}},
		{"azure shared key not base64", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.SAS, r.Azure.Key, r.SharedCredentials = false, "not base64!", true })
		}},
		{"azure SAS with its question mark", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Key = "?" + testSAS }) }},
		{"azure SAS without a signature", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Key = "sv=2020-12-06&se=2026-12-05&sr=c&sp=racwdl" })
		}},
		{"azure account SAS", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Key = "sv=2020-12-06&ss=b&srt=sco&se=2026-12-05&sp=racwdl&sig=eA" })
		}},
		{"azure SAS of one blob", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Key = strings.Replace(testSAS, "sr=c", "sr=b", 1) })
		}},
		{"azure SAS with a line break", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Azure.Key = testSAS + "\nrepo1-path=/x" }) }},
		{"storage host with a path", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Storage.Host = "evil.test/x?" }) }},
		{"storage host with a port", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Storage.Host = "localhost:1" }) }},
		{"storage port out of range", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Storage.Port = 70000 }) }},
		{"no verification and a CA file", func(c *Config) { c.Repos[0] = azureRepo(func(r *Repo) { r.Storage.SkipVerify = true }) }},
		{"no verification off loopback", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) { r.Storage = &Storage{Host: "blob.example.test", SkipVerify: true} })
		}},
		{"no verification with a shared key", func(c *Config) {
			c.Repos[0] = azureRepo(func(r *Repo) {
				r.Azure.SAS, r.Azure.Key, r.SharedCredentials = false, "a2V5", true
				r.Storage = &Storage{Host: "127.0.0.1", SkipVerify: true}
			})
		}},
		{"s3 access key without a token", func(c *Config) {
			c.Repos[0] = Repo{Type: S3, S3: &S3Store{Bucket: "b", Endpoint: "e", Region: "r", Key: "AK", KeySecret: "SK"}}
		}},
		{"unknown type", func(c *Config) { c.Repos[0].Type = "gcs" }},
		{"days and count", func(c *Config) { c.Repos[0].Retention.FullCount = 3 }},
		{"a line break in a value", func(c *Config) { c.PG.Path = "/x\nrepo1-path=/etc" }},
		{"backup-standby without a standby", func(c *Config) { c.BackupStandby = true }},
		{"a remote without a client certificate", func(c *Config) { c.PG.Remote = &Remote{Host: "h", CAFile: "ca"} }},
		{"a server admitting nobody", func(c *Config) { c.Server = &Server{CAFile: "ca", CertFile: "c", KeyFile: "k"} }},
		{"a server admitting a client for no stanza", func(c *Config) {
			c.Server = &Server{CAFile: "ca", CertFile: "c", KeyFile: "k", Auth: map[string][]string{"cn": nil}}
		}},
		{"a server admitting a client to every stanza", func(c *Config) {
			c.Server = &Server{CAFile: "ca", CertFile: "c", KeyFile: "k", Auth: map[string][]string{"cn": {"*"}}}
		}},
		{"a server admitting a list smuggled into one stanza", func(c *Config) {
			c.Server = &Server{CAFile: "ca", CertFile: "c", KeyFile: "k", Auth: map[string][]string{"cn": {"a,b"}}}
		}},
		{"a client name with a space", func(c *Config) {
			c.Server = &Server{CAFile: "ca", CertFile: "c", KeyFile: "k", Auth: map[string][]string{"c n": {"a"}}}
		}},
		{"a section header in a value", func(c *Config) {
			c.Repos[0] = Repo{Type: S3, S3: &S3Store{Bucket: "b", Endpoint: "e", Region: "r", Key: "k\n[other]"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := posixConfig()
			c.Repos = append([]Repo(nil), c.Repos...)
			tc.edit(&c)
			if _, err := c.Render(); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Render() error = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// azureRepo is a valid Azure repository as Fog writes it (a SAS for the stanza's container,
// Azurite's endpoint with a CA), edited.
func azureRepo(edit func(r *Repo)) Repo {
	r := Repo{Type: Azure, Path: "/", Azure: &AzureStore{Account: "devstoreaccount1", Container: "i-3f2a", Key: testSAS, SAS: true, PathStyle: true},
		Storage: &Storage{Host: "localhost", Port: 10000, CAFile: "/ca.crt"}}
	edit(&r)
	return r
}

// TestValidateNeverQuotesTheKey: the messages of a refused Azure repository name the option,
// never the credential.
func TestValidateNeverQuotesTheKey(t *testing.T) {
	const secret = "c2VjcmV0IGtleQ"
	for _, r := range []Repo{
		azureRepo(func(r *Repo) { r.Azure.SAS, r.Azure.Key = false, secret+"==" }),
		azureRepo(func(r *Repo) { r.Azure.Key = "?sv=1&sig=" + secret }),
		azureRepo(func(r *Repo) { r.Azure.Key = "sv=1&ss=b&sr=c&se=2&sig=" + secret }),
		azureRepo(func(r *Repo) { r.Azure.Key = "sig=" + secret + "\n" }),
		azureRepo(func(r *Repo) { r.Azure.Key = "sig=" + secret + "%zz" }),
	} {
		c := posixConfig()
		c.Repos = []Repo{r}
		err := c.Validate()
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("Validate() = %v, want an error that does not quote the key", err)
		}
	}
	c := posixConfig()
	c.Repos = []Repo{azureRepo(func(*Repo) {})}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() of a SAS for the container = %v", err)
	}
}

func TestCommands(t *testing.T) {
	d := &Driver{Bin: "/usr/bin/pgbackrest", Config: "/var/lib/fog/it's/pgbackrest.conf", Stanza: "i-3f2a"}
	if got, want := d.ArchivePushCommand(), `'/usr/bin/pgbackrest' --config='/var/lib/fog/it'\''s/pgbackrest.conf' --stanza='i-3f2a' archive-push %p`; got != want {
		t.Errorf("ArchivePushCommand() = %s, want %s", got, want)
	}
	if got, want := d.ArchiveGetCommand(), `'/usr/bin/pgbackrest' --config='/var/lib/fog/it'\''s/pgbackrest.conf' --stanza='i-3f2a' archive-get %f "%p"`; got != want {
		t.Errorf("ArchiveGetCommand() = %s, want %s", got, want)
	}
}

func TestParseInfo(t *testing.T) {
	b, err := os.ReadFile("testdata/info.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseInfo(b, "other"); err == nil {
		t.Error("ParseInfo of a stanza not in the output succeeded")
	}
	in, err := ParseInfo(b, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if in.Status.Code != StatusOK || len(in.DB) != 1 || in.DB[0].SystemID != 7715082222997022791 || in.DB[0].Version != "15" ||
		len(in.Repos) != 1 || in.Repos[0].Status.Code != 0 {
		t.Errorf("ParseInfo: status %+v, db %+v, repos %+v", in.Status, in.DB, in.Repos)
	}
	if len(in.Archive) != 1 || in.Archive[0].ID != "15-1" || in.Archive[0].Min != "000000010000000000000001" || in.Archive[0].Max != "000000010000000000000005" {
		t.Errorf("ParseInfo: archive %+v", in.Archive)
	}
	if len(in.Backup) != 2 {
		t.Fatalf("ParseInfo: %d backups, want 2", len(in.Backup))
	}
	f, d := in.Backup[0], in.Backup[1]
	if f.Label != "20261203-141925F" || f.Type != Full || f.Prior != "" || f.Reference != nil || f.Failed() ||
		f.LSN.Start != "0/3000028" || f.LSN.Stop != "0/30020E0" || f.Archive.Start != "000000010000000000000003" ||
		f.Info.Size != 45919852 || f.Info.Repository.Size != 9092887 || f.Repo() != 1 ||
		!f.Start().Equal(time.Unix(1796307565, 0)) || !f.Stop().Equal(time.Unix(1796307572, 0)) {
		t.Errorf("ParseInfo: full backup %+v", f)
	}
	if d.Label != "20261203-141925F_20261203-141933D" || d.Type != Diff || d.Prior != f.Label || len(d.Reference) != 1 ||
		d.Info.Delta != 1753354 || d.Info.Repository.Delta != 302891 {
		t.Errorf("ParseInfo: diff backup %+v", d)
	}
	if l, ok := in.Latest(1); !ok || l.Label != d.Label {
		t.Errorf("Latest(1) = %s, %v; want %s", l.Label, ok, d.Label)
	}
	if _, ok := in.Latest(2); ok {
		t.Error("Latest(2) found a backup in a repository that has none")
	}
	if e, ok := in.Earliest(0); !ok || !e.Equal(f.Stop()) {
		t.Errorf("Earliest(0) = %v, %v; want %v", e, ok, f.Stop())
	}

	b, err = os.ReadFile("testdata/info-set.json")
	if err != nil {
		t.Fatal(err)
	}
	if in, err = ParseInfo(b, "s1"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range in.Backup[0].DatabaseRef {
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "app,fog_system,other,postgres" {
		t.Errorf("ParseInfo with --set: databases %s, want app,fog_system,other,postgres", got)
	}
}

func TestNotInstalled(t *testing.T) {
	d := &Driver{Bin: "/nonexistent/pgbackrest", Config: "/nonexistent.conf", Stanza: "s"}
	if _, err := d.Info(t.Context(), ""); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Info with no executable = %v, want ErrNotInstalled", err)
	}
	if err := d.Restore(t.Context(), RestoreOptions{Progress: func(float64) {}}); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Restore with no executable = %v, want ErrNotInstalled", err)
	}
	if _, err := FindBinary("/nonexistent/pgbackrest"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("FindBinary of a missing file = %v, want ErrNotInstalled", err)
	}
}

func TestErrorLine(t *testing.T) {
	m := errorLine.FindStringSubmatch("P00  ERROR: [055]: unable to load info file '/r/archive/s1/archive.info'")
	if m == nil || m[1] != "055" || !strings.HasPrefix(m[2], "unable to load") {
		t.Errorf("errorLine = %q", m)
	}
	err := error(&Error{Command: "check", Code: CodeArchiveTimeout, Message: "WAL segment was not archived"})
	if !IsCode(err, CodeArchiveTimeout) || IsCode(err, CodeLockAcquire) || IsCode(errors.New("x"), CodeArchiveTimeout) {
		t.Error("IsCode")
	}
	if got := err.Error(); got != "pgbackrest check: [082] WAL segment was not archived" {
		t.Errorf("Error() = %q", got)
	}
	if m := newLabel.FindStringSubmatch("P00   INFO: new backup label = 20261203-141925F_20261203-141933D"); m == nil || m[1] != "20261203-141925F_20261203-141933D" {
		t.Errorf("newLabel = %q", m)
	}
	if m := restoredFile.FindStringSubmatch("P01 DETAIL: restore file /d/pgdata/base/5/1259 (112KB, 47.25%) checksum 1b2c"); m == nil || m[1] != "47.25" {
		t.Errorf("restoredFile = %q", m)
	}
}

// TestRestoreRefusesTargetsThatWouldAddSettings: pgBackRest writes a restore's target into
// postgresql.auto.conf unescaped, so a quote and a line break would add a setting
// (restore_command) the restored server runs; Restore refuses such options before it runs
// anything, and passes well-formed ones on.
func TestRestoreRefusesTargetsThatWouldAddSettings(t *testing.T) {
	d := &Driver{Bin: "/nonexistent/pgbackrest", Config: "/nonexistent.conf", Stanza: "s1"}
	for _, o := range []RestoreOptions{
		{Type: "name", Target: "p'\nrestore_command = 'touch /tmp/x-%f"},
		{Type: "name", Target: `back\slash`},
		{Type: "time", Target: "2026-01-02 03:04:05+00'\nrestore_command='x'"},
		{Type: "lsn", Target: "0/1' x"},
		{Type: "xid", Target: "12a"},
		{Type: "immediate", Target: "x"},
		{Type: "shell"},
		{Type: "time", Target: "2026-01-02 03:04:05+00", TargetTimeline: "2'\nx"},
		{Type: "time", Target: "2026-01-02 03:04:05+00", TargetAction: "promote'"},
		{Set: "20260101-000000F'"},
		{DBInclude: []string{"a\nb"}},
	} {
		if err := d.Restore(context.Background(), o); !errors.Is(err, ErrInvalidRestore) {
			t.Errorf("%+v: %v, want ErrInvalidRestore", o, err)
		}
	}
	for _, o := range []RestoreOptions{
		{Type: "time", Target: "2026-01-02 03:04:05.123456+00", TargetAction: "pause", TargetTimeline: "latest"},
		{Type: "lsn", Target: "0/3000060", TargetExclusive: true},
		{Type: "name", Target: "before upgrade"},
		{Type: "immediate", Set: "20260101-000000F_20260102-000000D"},
		{},
	} {
		if err := d.Restore(context.Background(), o); !errors.Is(err, ErrNotInstalled) {
			t.Errorf("%+v: %v, want it passed on (ErrNotInstalled here)", o, err)
		}
	}
}
