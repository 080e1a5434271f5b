package pgbackrest

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// RepoType is where a repository keeps its files (repo-type).
type RepoType string

// The repository types Fog drives.
const (
	Posix RepoType = "posix"
	S3    RepoType = "s3"
	Azure RepoType = "azure"
)

// Repo is one repository (repoN-* options). Its files for a stanza are under Path/archive/
// <stanza> and Path/backup/<stanza>.
type Repo struct {
	Type RepoType
	// Path is the repository's directory (posix) or its prefix in the bucket or container
	// (object stores; "/" when empty).
	Path string
	// Retention keeps backups and the WAL they need (zero values: pgBackRest's defaults,
	// which keep everything, with a warning).
	Retention Retention
	// S3 or Azure: the object store, for those types.
	S3    *S3Store
	Azure *AzureStore
	// Storage is the object store's address and TLS, when it is not the provider's default
	// endpoint (Azurite, MinIO).
	Storage *Storage
	// Bundle packs small files together (repo-bundle): a repository of many small
	// databases holds far fewer files or objects.
	Bundle bool
}

// Retention is a repository's expiry rule.
type Retention struct {
	// FullDays keeps full backups by age (repo-retention-full-type=time): enough full
	// backups that one is at least FullDays old, so a point in time that many days back
	// stays restorable. It excludes FullCount.
	FullDays int
	// FullCount keeps that many full backups (repo-retention-full-type=count).
	FullCount int
	// Diff keeps that many differential backups (repo-retention-diff).
	Diff int
}

// S3Store is an S3 bucket (repo-s3-*).
type S3Store struct {
	Bucket, Endpoint, Region string
	// Key, KeySecret and Token: an access key, or a session's credentials (Token set). Fog
	// hands an instance's OS user only credentials scoped to its stanza (docs/backups.md).
	Key, KeySecret, Token string
	// PathStyle addresses the bucket in the path, not the host name (MinIO).
	PathStyle bool
}

// AzureStore is an Azure Blob Storage container (repo-azure-*).
type AzureStore struct {
	Account, Container string
	// Key is the account's shared key, or a SAS token when SAS is set; Fog hands an
	// instance's OS user only a SAS scoped to its stanza's container (docs/backups.md).
	Key string
	SAS bool
	// PathStyle puts the account in the path (Azurite).
	PathStyle bool
}

// Storage is an object store's endpoint (repo-storage-*).
type Storage struct {
	Host string
	Port int
	// CAFile verifies the store's certificate; VerifyTLS false skips verification (tests
	// against a self-signed emulator only).
	CAFile    string
	VerifyTLS bool
}

// PG is the cluster a stanza backs up (pg1-* options).
type PG struct {
	// Path is the data directory.
	Path string
	// SocketPath and Port reach the server over its Unix socket.
	SocketPath string
	Port       int
	// User and Database are the role and database pgBackRest connects as and to.
	User, Database string
	// Remote, when set, reaches this cluster through the pgBackRest TLS server on its
	// machine (pgN-host-*): a standby's backup asks the primary to start and stop it there.
	Remote *Remote
}

// Remote is a pgBackRest TLS server a command reaches a cluster through.
type Remote struct {
	// Host must be a name the server's certificate carries as a DNS name: pgBackRest 2.45
	// does not match IP addresses.
	Host string
	Port int
	// CAFile verifies the server; CertFile and KeyFile are this side's client identity,
	// which the server admits for the stanza (Server.Auth).
	CAFile, CertFile, KeyFile string
	// Config is the configuration file the server's side reads (pgN-host-config).
	Config string
}

// Server is a pgBackRest TLS server's settings (tls-server-*): the one a primary's member runs,
// as its own OS user, so that its partner's standby can back up through it.
type Server struct {
	Address string
	Port    int
	// CAFile verifies clients; CertFile and KeyFile are the server's identity.
	CAFile, CertFile, KeyFile string
	// Auth maps a client certificate's common name to the stanzas it may use
	// (tls-server-auth); Fog admits the partner's identity for the one stanza.
	Auth map[string][]string
}

// Config is one pgbackrest.conf: global options, and one stanza's section. Fog writes one
// per instance, in a directory only root writes, readable by the instance's OS user.
type Config struct {
	Stanza string
	Repos  []Repo
	// PG is pg1. For a backup from a standby it is the primary (Remote set) and Standby,
	// pg2, the local standby, with BackupStandby; archive-push needs a configuration whose
	// pg1 is local.
	PG            PG
	Standby       *PG
	BackupStandby bool
	// Server, when set, adds the TLS server's settings (for `pgbackrest server`).
	Server *Server

	// ArchiveAsync pushes and gets WAL through a local spool in the background: PostgreSQL's
	// archive_command returns as soon as the segment is queued (archive-async).
	ArchiveAsync bool
	// SpoolPath holds the async queues and their status files (a restore clears the
	// stanza's part); it must be the instance's own (pgBackRest's default is shared by every
	// user of the machine).
	SpoolPath string
	// ArchivePushQueueMax bounds the WAL waiting to be pushed, in bytes: past it pgBackRest
	// drops the queue and tells PostgreSQL the WAL was archived, so an unreachable repository
	// cannot fill the disk; the WAL history then has a gap (docs/backups.md says how Fog
	// reports it). Zero: unbounded.
	ArchivePushQueueMax int64
	// ArchiveGetQueueMax bounds the WAL prefetched by an async archive-get (zero: default).
	ArchiveGetQueueMax int64
	// ProcessMax is how many processes compress and transfer in parallel.
	ProcessMax int
	// CompressType is gz, lz4, zst or bz2 ("" pgBackRest's default, gz). Fog uses zst: a
	// segment switched by archive_timeout is mostly zeros, which zst stores in under 1 KB and
	// lz4 in 69 KB.
	CompressType string
	// LockPath must be the instance's own too (the default is /tmp/pgbackrest).
	LockPath string
	// LogPath, when set, keeps pgBackRest's log files there (at level info); else pgBackRest
	// writes none (its default path belongs to the packaged postgres user).
	LogPath string
	// StartFast asks for an immediate checkpoint when a backup starts.
	StartFast bool
	// NoArchiveCheck turns off pgBackRest's checks of the archive settings and of the
	// backup's WAL reaching the repository (archive-check=n). pgBackRest refuses a backup of
	// a cluster with archive_mode=always, which every member of a group runs so that a
	// promotion needs no restart; the caller then waits for the WAL itself (WaitArchived).
	NoArchiveCheck bool
	// ArchiveTimeout is how long a backup or check waits for its WAL to be archived, in
	// seconds (zero: pgBackRest's 60).
	ArchiveTimeout int
}

var (
	// stanzaRE: pgBackRest accepts more, but a stanza names directories and objects in every
	// repository, and Fog's names are simple.
	stanzaRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	// cnRE: a client certificate's common name in tls-server-auth.
	cnRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
	// ErrInvalidConfig is returned by Validate.
	ErrInvalidConfig = errors.New("pgbackrest: invalid configuration")
)

// Validate checks what Render would otherwise write wrong: a value with a line break would
// end its option and start another.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if !stanzaRE.MatchString(c.Stanza) {
		return bad("stanza %q: want lower-case letters, digits, - and _", c.Stanza)
	}
	if len(c.Repos) == 0 {
		return bad("no repository")
	}
	if c.PG.Path == "" || (c.Standby != nil && c.Standby.Path == "") {
		return bad("no data directory")
	}
	if c.BackupStandby && c.Standby == nil {
		return bad("backup-standby needs the standby (pg2)")
	}
	for _, pg := range []*PG{&c.PG, c.Standby} {
		if pg != nil && pg.Remote != nil && (pg.Remote.Host == "" || pg.Remote.CAFile == "" || pg.Remote.CertFile == "" || pg.Remote.KeyFile == "") {
			return bad("a remote cluster needs a host, a CA and a client certificate and key")
		}
	}
	if v := c.Server; v != nil && (v.CAFile == "" || v.CertFile == "" || v.KeyFile == "" || len(v.Auth) == 0) {
		return bad("a TLS server needs a CA, a certificate and key, and the clients it admits")
	}
	// pgBackRest's defaults for both are shared by every user of the machine: another
	// instance's user could plant links there, or hold the locks.
	if c.SpoolPath == "" {
		return bad("no spool path: the default is shared by every user of the machine")
	}
	if c.LockPath == "" {
		return bad("no lock path: the default is shared by every user of the machine")
	}
	for i, r := range c.Repos {
		switch r.Type {
		case Posix, "":
			if r.Path == "" {
				return bad("repo%d: a posix repository needs a path", i+1)
			}
		case S3:
			if r.S3 == nil || r.S3.Bucket == "" || r.S3.Endpoint == "" || r.S3.Region == "" {
				return bad("repo%d: s3 needs a bucket, an endpoint and a region", i+1)
			}
		case Azure:
			if r.Azure == nil || r.Azure.Account == "" || r.Azure.Container == "" || r.Azure.Key == "" {
				return bad("repo%d: azure needs an account, a container and a key", i+1)
			}
		default:
			return bad("repo%d: unknown type %q", i+1, r.Type)
		}
		if r.Retention.FullDays > 0 && r.Retention.FullCount > 0 {
			return bad("repo%d: retention by days or by count, not both", i+1)
		}
	}
	_, err := c.render()
	return err
}

// Render returns the file's text.
func (c Config) Render() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c.render()
}

func (c Config) render() ([]byte, error) {
	var b strings.Builder
	var err error
	put := func(k, v string) {
		if strings.ContainsAny(v, "\r\n\x00") || strings.ContainsAny(k, "\r\n\x00=[]") {
			err = fmt.Errorf("%w: option %s: a line break or NUL in its value", ErrInvalidConfig, k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	putIf := func(k, v string) {
		if v != "" {
			put(k, v)
		}
	}
	yn := func(v bool) string {
		if v {
			return "y"
		}
		return "n"
	}
	num := func(k string, v int64) {
		if v > 0 {
			put(k, strconv.FormatInt(v, 10))
		}
	}
	b.WriteString("# Written by Fog. Do not edit: it is rewritten on every reconcile.\n[global]\n")
	for i, r := range c.Repos {
		p := fmt.Sprintf("repo%d-", i+1)
		typ := r.Type
		if typ == "" {
			typ = Posix
		}
		put(p+"type", string(typ))
		path := r.Path
		if path == "" {
			path = "/"
		}
		put(p+"path", path)
		switch {
		case r.Retention.FullDays > 0:
			put(p+"retention-full-type", "time")
			num(p+"retention-full", int64(r.Retention.FullDays))
		case r.Retention.FullCount > 0:
			put(p+"retention-full-type", "count")
			num(p+"retention-full", int64(r.Retention.FullCount))
		}
		num(p+"retention-diff", int64(r.Retention.Diff))
		if r.Bundle {
			put(p+"bundle", "y")
		}
		if s := r.S3; typ == S3 && s != nil {
			put(p+"s3-bucket", s.Bucket)
			put(p+"s3-endpoint", s.Endpoint)
			put(p+"s3-region", s.Region)
			putIf(p+"s3-key", s.Key)
			putIf(p+"s3-key-secret", s.KeySecret)
			putIf(p+"s3-token", s.Token)
			if s.PathStyle {
				put(p+"s3-uri-style", "path")
			}
		}
		if a := r.Azure; typ == Azure && a != nil {
			put(p+"azure-account", a.Account)
			put(p+"azure-container", a.Container)
			put(p+"azure-key", a.Key)
			if a.SAS {
				put(p+"azure-key-type", "sas")
			}
			if a.PathStyle {
				put(p+"azure-uri-style", "path")
			}
		}
		if s := r.Storage; s != nil && typ != Posix {
			putIf(p+"storage-host", s.Host)
			num(p+"storage-port", int64(s.Port))
			putIf(p+"storage-ca-file", s.CAFile)
			put(p+"storage-verify-tls", yn(s.VerifyTLS))
		}
	}
	if c.ArchiveAsync {
		put("archive-async", "y")
	}
	put("spool-path", c.SpoolPath)
	num("archive-push-queue-max", c.ArchivePushQueueMax)
	num("archive-get-queue-max", c.ArchiveGetQueueMax)
	num("archive-timeout", int64(c.ArchiveTimeout))
	num("process-max", int64(c.ProcessMax))
	putIf("compress-type", c.CompressType)
	put("lock-path", c.LockPath)
	if c.LogPath != "" {
		put("log-path", c.LogPath)
		put("log-level-file", "info")
	} else {
		put("log-level-file", "off")
	}
	if c.StartFast {
		put("start-fast", "y")
	}
	if c.BackupStandby {
		put("backup-standby", "y")
	}
	if c.NoArchiveCheck {
		put("archive-check", "n")
	}
	if v := c.Server; v != nil {
		putIf("tls-server-address", v.Address)
		num("tls-server-port", int64(v.Port))
		put("tls-server-ca-file", v.CAFile)
		put("tls-server-cert-file", v.CertFile)
		put("tls-server-key-file", v.KeyFile)
		cns := make([]string, 0, len(v.Auth))
		for cn := range v.Auth {
			cns = append(cns, cn)
		}
		sort.Strings(cns)
		for _, cn := range cns {
			// Each client is admitted to named stanzas only: "*" would admit it to every
			// stanza the server's repository holds, and "," splits a list.
			if len(v.Auth[cn]) == 0 || !cnRE.MatchString(cn) {
				err = fmt.Errorf("%w: tls-server-auth for %q", ErrInvalidConfig, cn)
			}
			for _, st := range v.Auth[cn] {
				if !stanzaRE.MatchString(st) {
					err = fmt.Errorf("%w: tls-server-auth for %q: stanza %q", ErrInvalidConfig, cn, st)
				}
			}
			put("tls-server-auth", cn+"="+strings.Join(v.Auth[cn], ","))
		}
	}
	fmt.Fprintf(&b, "\n[%s]\n", c.Stanza)
	pg := func(n int, g PG) {
		p := fmt.Sprintf("pg%d-", n)
		put(p+"path", g.Path)
		putIf(p+"socket-path", g.SocketPath)
		if g.Port > 0 {
			put(p+"port", strconv.Itoa(g.Port))
		}
		putIf(p+"user", g.User)
		putIf(p+"database", g.Database)
		if r := g.Remote; r != nil {
			put(p+"host", r.Host)
			put(p+"host-type", "tls")
			num(p+"host-port", int64(r.Port))
			put(p+"host-ca-file", r.CAFile)
			put(p+"host-cert-file", r.CertFile)
			put(p+"host-key-file", r.KeyFile)
			putIf(p+"host-config", r.Config)
		}
	}
	pg(1, c.PG)
	if c.Standby != nil {
		pg(2, *c.Standby)
	}
	if err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
