package pgbackrest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
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
	// SharedCredentials accepts credentials that reach beyond the stanza: an Azure
	// account's shared key, an S3 access key without a session token. Validate refuses them
	// otherwise: a tenant who escaped its server is the instance's OS user, which reads the
	// configuration (docs/backups.md, the tenant boundary). The operator accepts it for a
	// machine whose instances share one user (--backup-shared-credentials).
	SharedCredentials bool
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
	// Account is the storage account; Container holds the repository (Fog's: one per
	// stanza, so that a SAS for it reaches no other stanza).
	Account, Container string
	// Key is a SAS token when SAS is set (repo-azure-key-type=sas), else the account's
	// shared key (shared), which reaches every container of the account. Fog hands an
	// instance's OS user only a service SAS for its stanza's container (docs/backups.md);
	// Validate refuses a shared key unless the repository says the operator accepted it
	// (Repo.SharedCredentials), and a SAS that is not a container's.
	Key string
	SAS bool
	// PathStyle puts the account in the path rather than the host name
	// (repo-azure-uri-style=path): Azurite, or an endpoint reached by address.
	PathStyle bool
}

// Storage is an object store's endpoint (repo-storage-*). pgBackRest reaches object stores
// over TLS only, and verifies the store's certificate against the system's CAs, or CAFile.
type Storage struct {
	// Host and Port: the endpoint, when it is not the provider's default (Azurite, MinIO).
	// pgBackRest 2.45 matches the certificate's DNS names only, not its IP addresses, so
	// Host is a name the certificate carries.
	Host string
	Port int
	// CAFile verifies the store's certificate (repo-storage-ca-file): an emulator's, signed
	// by a CA of the operator's.
	CAFile string
	// SkipVerify turns verification off (repo-storage-verify-tls=n). Validate allows it for
	// a store on loopback only, and never with a shared key: anyone who answers for the host
	// would be handed the credentials.
	SkipVerify bool
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
	// Azure's rules for names: an account is 3 to 24 lower-case letters and digits; a
	// container 3 to 63 lower-case letters, digits and single hyphens, starting and ending
	// with a letter or digit.
	azureAccountRE   = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	azureContainerRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9]|-[a-z0-9]){2,62}$`)
	// storageHostRE: a host name or IPv4 address, nothing that would change the URL.
	storageHostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
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
			if err := r.validateAzure(); err != nil {
				return bad("repo%d: %v", i+1, err)
			}
		default:
			return bad("repo%d: unknown type %q", i+1, r.Type)
		}
		if r.Type == S3 && r.S3.Token == "" && r.S3.Key != "" && !r.SharedCredentials {
			return bad("repo%d: an s3 access key without a session token reaches the whole bucket: give the stanza scoped credentials, or accept shared ones", i+1)
		}
		if r.Type == S3 || r.Type == Azure {
			if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
				return bad("repo%d: the path in the store must start with /", i+1)
			}
			if err := r.validateStorage(); err != nil {
				return bad("repo%d: %v", i+1, err)
			}
		}
		if r.Retention.FullDays > 0 && r.Retention.FullCount > 0 {
			return bad("repo%d: retention by days or by count, not both", i+1)
		}
	}
	_, err := c.render()
	return err
}

// validateAzure checks an Azure repository. Its messages never quote the key.
func (r Repo) validateAzure() error {
	a := r.Azure
	if a == nil || a.Account == "" || a.Container == "" || a.Key == "" {
		return errors.New("azure needs an account, a container and a key")
	}
	if !azureAccountRE.MatchString(a.Account) {
		return fmt.Errorf("azure account %q: want 3 to 24 lower-case letters and digits", a.Account)
	}
	if !azureContainerRE.MatchString(a.Container) {
		return fmt.Errorf("azure container %q: want 3 to 63 lower-case letters, digits and single hyphens", a.Container)
	}
	if !a.SAS {
		if !r.SharedCredentials {
			return errors.New("an azure shared key reaches every container of the account: give the stanza a SAS for its container, or accept shared credentials")
		}
		if k, err := base64.StdEncoding.DecodeString(a.Key); err != nil || len(k) == 0 {
			return errors.New("the azure shared key is not base64")
		}
		return nil
	}
	// A SAS as Azure's tools print it: a query string without its "?". Only a service SAS
	// for the container itself (sr=c) is scoped to the stanza: an account SAS (ss, srt)
	// reaches every container, and a blob's SAS would not let pgBackRest list.
	if strings.HasPrefix(a.Key, "?") {
		return errors.New("the azure SAS starts with ?: give the query string without it")
	}
	q, err := url.ParseQuery(a.Key)
	if err != nil {
		return errors.New("the azure SAS is not a query string")
	}
	if q.Get("sig") == "" || q.Get("sv") == "" || q.Get("se") == "" {
		return errors.New("the azure SAS has no signature, version or expiry (sig, sv, se)")
	}
	if q.Has("ss") || q.Has("srt") || q.Get("sr") != "c" {
		return errors.New("the azure SAS is not a service SAS for one container (sr=c)")
	}
	return nil
}

// validateStorage checks an object store's endpoint.
func (r Repo) validateStorage() error {
	s := r.Storage
	if s == nil {
		return nil
	}
	if s.Host != "" && !storageHostRE.MatchString(s.Host) {
		return fmt.Errorf("storage host %q: want a host name or an IPv4 address", s.Host)
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("storage port %d", s.Port)
	}
	if s.SkipVerify {
		if s.CAFile != "" {
			return errors.New("a storage CA file with verification off: one or the other")
		}
		if !isLoopback(s.Host) {
			return errors.New("storage TLS verification may be off for a store on loopback only")
		}
		if (r.Type == Azure && r.Azure != nil && !r.Azure.SAS) || (r.Type == S3 && r.S3 != nil && r.S3.Token == "") {
			return errors.New("storage TLS verification off with credentials that are not the stanza's alone")
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
			} else {
				put(p+"azure-key-type", "shared")
			}
			if a.PathStyle {
				put(p+"azure-uri-style", "path")
			}
		}
		if s := r.Storage; s != nil && typ != Posix {
			putIf(p+"storage-host", s.Host)
			num(p+"storage-port", int64(s.Port))
			putIf(p+"storage-ca-file", s.CAFile)
			put(p+"storage-verify-tls", yn(!s.SkipVerify))
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
