package agent

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/blob"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgbackrest"
	"github.com/fogdb/fog/internal/postgres"
)

// Repository types of --backup-repo-type.
const (
	RepoPosix = "posix"
	RepoAzure = "azure"
)

// AzureConfig is a region's repository in Azure Blob Storage (--backup-repo-type azure): one
// container per stanza, made by the agent with the account's key, and in each instance's
// pgBackRest configuration only a service SAS for its own container (docs/backups.md, the
// tenant boundary).
type AzureConfig struct {
	// Account is the storage account; KeyFile holds its shared key (base64, as Azure shows
	// it), a file only the agent's user may read. The key is read once, at start, and kept
	// in the blob client only: it is in no flag, log line, error or instance's file.
	Account, KeyFile string
	// Host and Port are the Blob service's endpoint (default <account>.blob.core.windows.net,
	// 443). A host that is not <account>.<domain> is addressed path-style (the account in
	// the path), as Azurite serves it.
	Host string
	Port int
	// CAFile verifies the endpoint's certificate (default: the system's CAs). It is copied
	// beside each instance's configuration, where the instance's OS user can read it.
	CAFile string
	// ContainerPrefix starts every container's name: <prefix><region>-<stanza>.
	ContainerPrefix string
	// SASLifetime is how long a SAS written into an instance's configuration is valid, and
	// SASRenewBefore how long before its expiry the agent writes a new one (defaults 48h
	// and 24h: renewed about daily).
	SASLifetime, SASRenewBefore time.Duration
	// Now is the clock SAS expiries are reckoned by (nil: time.Now).
	Now func() time.Time

	// client holds the key (a pointer: a configuration printed with %v shows no key).
	client *blob.Client
	caPEM  []byte
}

// Defaults of the Azure repository.
const (
	DefaultAzurePort            = 443
	DefaultAzureContainerPrefix = "fog-"
	DefaultSASLifetime          = 48 * time.Hour
	DefaultSASRenewBefore       = 24 * time.Hour
)

func (c *AzureConfig) registerFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Account, "backup-azure-account", c.Account, "with --backup-repo-type azure: the storage account")
	fs.StringVar(&c.KeyFile, "backup-azure-key-file", c.KeyFile, "with --backup-repo-type azure: `FILE` holding the storage account's key (mode 0600; instances get a SAS for their own container only)")
	fs.StringVar(&c.Host, "backup-azure-host", c.Host, "with --backup-repo-type azure: the Blob service's host (default <account>.blob.core.windows.net; an emulator's such as localhost is addressed path-style)")
	fs.IntVar(&c.Port, "backup-azure-port", c.Port, "with --backup-repo-type azure: the Blob service's port")
	fs.StringVar(&c.CAFile, "backup-azure-ca-file", c.CAFile, "with --backup-repo-type azure: PEM `FILE` of the CA that signed the Blob service's certificate (default: the system's CAs)")
	fs.StringVar(&c.ContainerPrefix, "backup-azure-container-prefix", c.ContainerPrefix, "with --backup-repo-type azure: the start of every container's name, <prefix><region>-<stanza>")
}

var (
	azureAccountRE = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	// azureHostRE: a host name or IPv4 address, nothing that would change the URL.
	azureHostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$`)
	// containerPrefixRE: what may start a container's name (which allows no double hyphen),
	// leaving room for the region and the stanza.
	containerPrefixRE = regexp.MustCompile(`^([a-z0-9](-?[a-z0-9]){0,22}-?)?$`)
)

// validateRepo checks --backup-repo-type and the flags of its store, reads the account key
// and makes the store's client.
func (c *BackupConfig) validateRepo() error {
	if c.RepoType == "" {
		c.RepoType = RepoPosix
	}
	a := &c.Azure
	switch c.RepoType {
	case RepoPosix:
		for flag, v := range map[string]string{"--backup-azure-account": a.Account, "--backup-azure-key-file": a.KeyFile,
			"--backup-azure-host": a.Host, "--backup-azure-ca-file": a.CAFile} {
			if v != "" {
				return fmt.Errorf("%s is for --backup-repo-type azure; the repository is %s", flag, c.RepoType)
			}
		}
		return nil
	case RepoAzure:
	default:
		return fmt.Errorf("--backup-repo-type %q: want posix (a directory, --backup-dir) or azure (Azure Blob Storage)", c.RepoType)
	}
	if a.Account == "" {
		return errors.New("--backup-azure-account: required with --backup-repo-type azure")
	}
	if !azureAccountRE.MatchString(a.Account) {
		return fmt.Errorf("--backup-azure-account %q: want 3 to 24 lower-case letters and digits", a.Account)
	}
	if a.Host == "" {
		a.Host = a.Account + ".blob.core.windows.net"
	}
	if !azureHostRE.MatchString(a.Host) {
		return fmt.Errorf("--backup-azure-host %q: want a host name or an IPv4 address, without scheme, port or path", a.Host)
	}
	if a.Port == 0 {
		a.Port = DefaultAzurePort
	}
	if a.Port < 1 || a.Port > 65535 {
		return fmt.Errorf("--backup-azure-port %d: want 1 to 65535", a.Port)
	}
	a.caPEM = nil
	if a.CAFile != "" {
		b, err := os.ReadFile(a.CAFile)
		if err != nil {
			return fmt.Errorf("--backup-azure-ca-file: %w", err)
		}
		if !hasCertificate(b) {
			return fmt.Errorf("--backup-azure-ca-file %s: holds no PEM certificate", a.CAFile)
		}
		a.caPEM = b
	}
	if a.ContainerPrefix == "" {
		a.ContainerPrefix = DefaultAzureContainerPrefix
	}
	a.ContainerPrefix = strings.ToLower(a.ContainerPrefix)
	if !containerPrefixRE.MatchString(a.ContainerPrefix) {
		return fmt.Errorf("--backup-azure-container-prefix %q: want up to 24 lower-case letters, digits and single hyphens, starting with a letter or digit", a.ContainerPrefix)
	}
	if a.SASLifetime == 0 {
		a.SASLifetime = DefaultSASLifetime
	}
	if a.SASRenewBefore == 0 {
		a.SASRenewBefore = DefaultSASRenewBefore
	}
	if a.SASRenewBefore >= a.SASLifetime {
		return fmt.Errorf("a SAS renewed %s before its expiry needs a lifetime longer than %s", a.SASRenewBefore, a.SASLifetime)
	}
	key, err := readKeyFile(a.KeyFile)
	if err != nil {
		return err
	}
	hc, err := blob.HTTPClient(a.CAFile)
	if err != nil {
		return fmt.Errorf("--backup-azure-ca-file: %w", err)
	}
	endpoint := blob.Endpoint(a.Account, a.Host, a.Port, true)
	if domain, ok := strings.CutPrefix(a.Host, a.Account+"."); ok {
		endpoint = blob.Endpoint(a.Account, domain, a.Port, false)
	}
	if a.client, err = blob.New(a.Account, key, endpoint, hc); err != nil {
		// blob's errors never quote the key.
		return fmt.Errorf("--backup-azure-key-file: %w", err)
	}
	return nil
}

// readKeyFile reads the account key: a file only its owner may read, holding base64.
func readKeyFile(file string) (string, error) {
	if file == "" {
		return "", errors.New("--backup-azure-key-file: required with --backup-repo-type azure (a file holding the storage account's key, mode 0600)")
	}
	fi, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("--backup-azure-key-file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("--backup-azure-key-file %s: not a regular file", file)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--backup-azure-key-file %s: mode %04o lets other users read the account key; chmod 600 it", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--backup-azure-key-file: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("--backup-azure-key-file %s: empty; write the storage account's key into it", file)
	}
	if !isBase64Key(key) {
		return "", fmt.Errorf("--backup-azure-key-file %s: not a storage account key (base64, as Azure shows it)", file)
	}
	return key, nil
}

func isBase64Key(k string) bool {
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) > 0
}

func hasCertificate(b []byte) bool {
	for {
		var p *pem.Block
		p, b = pem.Decode(b)
		if p == nil {
			return false
		}
		if p.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(p.Bytes); err == nil {
				return true
			}
		}
	}
}

// containerName is the name of stanza's container in region: <prefix><region>-<stanza>, in
// lower case, every run of other characters a single hyphen, and, after a container of that
// name turned out not to be this instance's (n > 0), "-<n>". Azure takes 3 to 63 characters:
// a longer name keeps its start and ends in a hash of the whole.
func containerName(prefix, region, stanza string, n int) string {
	raw := strings.ToLower(prefix + region + "-" + stanza)
	if n > 0 {
		raw += "-" + strconv.Itoa(n)
	}
	var b strings.Builder
	dash := true // no hyphen first
	for _, r := range raw {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(raw))
		name = strings.TrimRight(name[:63-13], "-") + "-" + hex.EncodeToString(sum[:])[:12]
	}
	for len(name) < 3 {
		name += "0"
	}
	return name
}

// Container metadata, which only the account key reads and writes (a container SAS can do
// neither): whose the container is, so that no instance is ever handed another's.
const (
	metaOwner  = "fogowner"  // the instance's UID
	metaStanza = "fogstanza" // the stanza
	metaAside  = "fogaside"  // when it was set aside (another system's history was found in it)
)

// azureRepos is the agent's side of an Azure repository: the containers it found or made for
// each instance's stanza and the SAS it last wrote for each.
type azureRepos struct {
	cfg    *AzureConfig
	region string

	mu   sync.Mutex
	byID map[string]*stanzaContainer // by instance UID and stanza
	// failed is when finding a container last failed, by instance UID and stanza: the
	// worker that asks is not held up again for storeRetry.
	failed map[string]time.Time
}

// errObjectStore is a repository in an object store that could not be reached or refused
// the agent.
var errObjectStore = errors.New("the backup repository's object store")

// errStoreWait is errObjectStore while the agent waits storeRetry before asking again.
var errStoreWait = fmt.Errorf("%w: not asked again yet", errObjectStore)

// storeRetry is how long after a failed lookup of a container the agent asks again, and
// storeTimeout how long it waits for one: the instance's worker waits meanwhile.
const (
	storeRetry   = 30 * time.Second
	storeTimeout = 15 * time.Second
)

// stanzaContainer is a stanza's container and the SAS for it.
type stanzaContainer struct {
	name   string
	sas    string
	expiry time.Time
}

func newAzureRepos(cfg *AzureConfig, region string) *azureRepos {
	return &azureRepos{cfg: cfg, region: region, byID: map[string]*stanzaContainer{}, failed: map[string]time.Time{}}
}

func (r *azureRepos) now() time.Time {
	if r.cfg.Now != nil {
		return r.cfg.Now()
	}
	return time.Now()
}

// container returns instance uid's container of stanza, with a SAS valid for more than
// SASRenewBefore: the one last handed out, or a new one. The first time, it finds the
// container or makes it: the first of <name>, <name>-1, ... that is uid's for the stanza
// and not set aside, or that does not exist yet (made, recording uid and the stanza); each
// passed over is named in passed.
func (r *azureRepos) container(ctx context.Context, uid, stanza string) (stanzaContainer, []string, error) {
	key := uid + "/" + stanza
	r.mu.Lock()
	c, ok := r.byID[key]
	r.mu.Unlock()
	var passed []string
	if !ok {
		r.mu.Lock()
		at, failed := r.failed[key]
		r.mu.Unlock()
		if failed && time.Since(at) < storeRetry {
			return stanzaContainer{}, nil, fmt.Errorf("%w (the last attempt, %s ago, failed)", errStoreWait, time.Since(at).Round(time.Second))
		}
		fctx, cancel := context.WithTimeout(ctx, storeTimeout)
		name, p, err := r.find(fctx, uid, stanza)
		cancel()
		passed = p
		if err != nil {
			r.mu.Lock()
			r.failed[key] = time.Now()
			r.mu.Unlock()
			return stanzaContainer{}, passed, fmt.Errorf("%w: %w", errObjectStore, err)
		}
		r.mu.Lock()
		delete(r.failed, key)
		if c, ok = r.byID[key]; !ok || c.name != name {
			c = &stanzaContainer{name: name}
			r.byID[key] = c
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if c.sas == "" || !now.Add(r.cfg.SASRenewBefore).Before(c.expiry) {
		expiry := now.Add(r.cfg.SASLifetime).UTC().Truncate(time.Second)
		sas, err := r.cfg.client.ContainerSAS(c.name, expiry)
		if err != nil {
			return stanzaContainer{}, passed, err
		}
		c.sas, c.expiry = sas, expiry
	}
	return *c, passed, nil
}

// due reports whether the SAS last handed out for uid's stanza must be replaced.
func (r *azureRepos) due(uid, stanza string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.byID[uid+"/"+stanza]
	if at, failed := r.failed[uid+"/"+stanza]; !ok && failed && time.Since(at) < storeRetry {
		return false
	}
	return !ok || c.sas == "" || !r.now().Add(r.cfg.SASRenewBefore).Before(c.expiry)
}

// find finds or makes uid's container for stanza.
func (r *azureRepos) find(ctx context.Context, uid, stanza string) (string, []string, error) {
	var passed []string
	cl := r.cfg.client
	for n := 0; n < 100; n++ {
		name := containerName(r.cfg.ContainerPrefix, r.region, stanza, n)
		meta, ok, err := cl.ContainerMetadata(ctx, name)
		if err != nil {
			return "", passed, err
		}
		if !ok {
			created, err := cl.CreateContainerWithMetadata(ctx, name, map[string]string{metaOwner: uid, metaStanza: stanza})
			if err != nil {
				return "", passed, err
			}
			if created {
				return name, passed, nil
			}
			// Made meanwhile: look at whose it is.
			if meta, _, err = cl.ContainerMetadata(ctx, name); err != nil {
				return "", passed, err
			}
		}
		if meta[metaOwner] == uid && meta[metaStanza] == stanza && meta[metaAside] == "" {
			return name, passed, nil
		}
		passed = append(passed, name)
	}
	return "", passed, fmt.Errorf("no container of stanza %s is the instance's, and 100 names are taken", stanza)
}

// setAside marks uid's container of stanza set aside (it holds another system's history):
// it keeps its backups, is never handed out again, and the next lookup makes a new one.
func (r *azureRepos) setAside(ctx context.Context, uid, stanza string, now time.Time) (string, error) {
	key := uid + "/" + stanza
	r.mu.Lock()
	c, ok := r.byID[key]
	r.mu.Unlock()
	if !ok {
		name, _, err := r.find(ctx, uid, stanza)
		if err != nil {
			return "", err
		}
		c = &stanzaContainer{name: name}
	}
	meta := map[string]string{metaOwner: uid, metaStanza: stanza, metaAside: now.UTC().Format("20060102T150405.000Z")}
	if err := r.cfg.client.SetContainerMetadata(ctx, c.name, meta); err != nil {
		return "", fmt.Errorf("set the stanza's old history aside: %w", err)
	}
	r.mu.Lock()
	delete(r.byID, key)
	r.mu.Unlock()
	return c.name, nil
}

// azureCAFile is the copy of the store's CA beside an instance's configuration.
const azureCAFile = "pgbackrest-ca.crt"

// repoRoot is the directory of the region's posix repository, "" when the repository is in
// an object store (nothing of it is on this machine).
func (a *Agent) repoRoot() string {
	if a.az != nil {
		return ""
	}
	return a.cfg.Backup.Dir
}

// repoConfig is backupConfig with the region's repository as it is for instance p's stanza in
// cluster c (p's own, or a restore's scratch cluster run by p's OS user). For Azure, the
// stanza's container is found or made, the configuration gets only a SAS for it, and the
// store's CA is copied beside it (the operator's file may be out of the instance user's
// reach).
func (p *pgServer) repoConfig(ctx context.Context, c *postgres.Cluster, b instance.BackupSpec) (pgbackrest.Config, error) {
	cfg := p.a.backupConfig(c, b)
	az := p.a.az
	if az == nil {
		return cfg, nil
	}
	sc, passed, err := az.container(ctx, p.uid, b.Stanza)
	if len(passed) > 0 {
		p.a.log.Warn("containers of the stanza's name are not the instance's (another instance's, set aside, or not Fog's); they are left alone",
			"instance", p.uid, "stanza", b.Stanza, "containers", strings.Join(passed, ","))
	}
	if err != nil {
		return cfg, fmt.Errorf("the stanza's container in storage account %s: %w", az.cfg.Account, err)
	}
	a := az.cfg
	repo := pgbackrest.Repo{Type: pgbackrest.Azure, Path: "/", Retention: cfg.Repos[0].Retention,
		// Bundled: an object store creates objects slowly, and a cluster is mostly small
		// files (measured in internal/pgbackrest: backup, verify and restore 3 to 6 times
		// faster).
		Bundle: true,
		Azure:  &pgbackrest.AzureStore{Account: a.Account, Container: sc.name, Key: sc.sas, SAS: true}}
	st := &pgbackrest.Storage{}
	if _, hostStyle := strings.CutPrefix(a.Host, a.Account+"."); !hostStyle {
		repo.Azure.PathStyle = true
		st.Host = a.Host
	} else if a.Host != a.Account+".blob.core.windows.net" {
		st.Host = a.Host
	}
	if a.Port != DefaultAzurePort {
		st.Port = a.Port
	}
	if len(a.caPEM) > 0 {
		if err := c.WriteBackupFile(azureCAFile, a.caPEM); err != nil {
			return cfg, fmt.Errorf("the storage CA: %w", err)
		}
		st.CAFile = filepath.Join(c.Dir, azureCAFile)
	}
	if *st != (pgbackrest.Storage{}) {
		repo.Storage = st
	}
	cfg.Repos = []pgbackrest.Repo{repo}
	return cfg, nil
}

// repositoryServer is a Server that says where its backups go, and keeps the credentials
// its configuration holds for that repository valid.
type repositoryServer interface {
	BackupRepository(ctx context.Context) (*instance.BackupRepository, error)
}

// BackupRepository describes the instance's repository (never a credential). For Azure, it
// first rewrites the configuration with a new SAS when the one it holds has less than
// SASRenewBefore left: the worker calls it on every observation of the instance, so the SAS
// is renewed within a second or so of becoming due (pgBackRest reads the file on every
// command; nothing restarts).
func (p *pgServer) BackupRepository(ctx context.Context) (*instance.BackupRepository, error) {
	if p.backup == nil {
		return nil, nil
	}
	az := p.a.az
	if az == nil {
		return &instance.BackupRepository{Type: RepoPosix, Path: p.BackupPaths(p.a.cfg.Backup.Dir, p.backup.Stanza).Repo}, nil
	}
	var err error
	if az.due(p.uid, p.backup.Stanza) {
		if _, err = p.ConfigureBackup(*p.backup); err == nil && !az.due(p.uid, p.backup.Stanza) {
			p.a.log.Info("backup credentials renewed: a new SAS for the stanza's container is in the instance's configuration", "instance", p.uid, "stanza", p.backup.Stanza)
		}
	}
	az.mu.Lock()
	defer az.mu.Unlock()
	r := &instance.BackupRepository{Type: RepoAzure, Account: az.cfg.Account}
	if c, ok := az.byID[p.uid+"/"+p.backup.Stanza]; ok {
		r.Container, r.CredentialExpiry = c.name, c.expiry
	}
	return r, err
}

// configureWithoutStore is ConfigureBackup while the object store does not answer (err):
// the instance runs on without its repository, as when a directory's disk is gone. Its
// configuration stays as it was (a SAS still valid, or none yet), archiving fails into its
// bounded queue, and the worker asks the store again (BackupRepository).
func (p *pgServer) configureWithoutStore(b instance.BackupSpec, err error) (string, error) {
	if !errors.Is(err, errStoreWait) {
		p.a.log.Warn("the backup repository cannot be reached; the instance's pgBackRest configuration is left as it was", "instance", p.uid, "stanza", b.Stanza, "err", err)
	}
	if _, rerr := p.Cluster.ReadFile("pgbackrest.conf", 1<<20); errors.Is(rerr, os.ErrNotExist) {
		// None yet: one whose repository is a directory the instance's user cannot make,
		// so that archive-push fails into its bounded queue rather than leaving WAL to
		// pile up without a bound.
		cfg := p.a.backupConfig(p.Cluster, b)
		cfg.Repos[0].Path = filepath.Join(p.Cluster.Dir, "repository-unreachable")
		text, rerr := cfg.Render()
		if rerr == nil {
			_, rerr = p.Cluster.PrepareBackup("", b.Stanza, text)
		}
		if rerr != nil {
			return "", rerr
		}
	}
	d, derr := p.a.driver(p.Cluster, b.Stanza)
	if derr != nil {
		return "", derr
	}
	return d.ArchivePushCommand(), nil
}
