package agent

import (
	"context"
	"log/slog"
	"os/user"
	"time"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/postgres"
)

// Config configures one agent.
type Config struct {
	Region string
	// Dir holds the region's instances, one directory each.
	Dir string
	// FogUser is the OS user this process runs as; it may connect as the system role.
	FogUser string
	// PGBin is the directory of the PostgreSQL server binaries ("": postgres.FindBinaries
	// looks for them) and PGUser the unprivileged OS user that runs PostgreSQL when fog runs
	// as root; Runner makes the runner New takes from them.
	PGBin, PGUser string
	// CACertPEM is the CA that standbys verify their primary's certificate with.
	CACertPEM []byte
	// Resync is how often every instance is reconciled (and repaired) even without a change.
	Resync time.Duration
	// Observe is how often the state of each running instance is published (replication
	// lag, role, databases): API reads answer from it and never ask the agent.
	Observe time.Duration
	// StopOnExit stops every instance when Run returns (fog up's Ctrl-C).
	StopOnExit bool
	// MaxSlotWALKeepSize overrides PostgreSQL's bound on WAL kept for a slot.
	MaxSlotWALKeepSize string
	// GuardLibrary is the fog_guard library every instance loads ("" when it could not be
	// built: admins then get no CREATEROLE).
	GuardLibrary string
	// Lease is the timing of the agent's lease (package lease).
	Lease lease.Timing
	// GuardCommand starts the guard process that fences this region's primaries if the
	// agent dies (the fog binary and "guard"); nil runs none, and says so at start.
	GuardCommand []string
	// GuardFile is where the agent writes the guard's deadlines (default: beside Dir).
	GuardFile string
	// Record is what the agent publishes about its machine when it starts (the address
	// range and port of its instances and listeners); its Region and Started are filled in.
	Record instance.AgentRecord
	// Backup is where the region's backups go and how pgBackRest runs.
	Backup BackupConfig
	// Servers makes the Server of an instance; nil runs the real PostgreSQL clusters under
	// Dir. Tests set it to run the agent against in-memory servers (package agenttest).
	Servers func(s instance.Spec) Server
}

// Defaults of the agent's settings.
const (
	DefaultPGUser  = "postgres"
	DefaultResync  = 2 * time.Second
	DefaultObserve = time.Second
)

// Defaults returns the configuration with the defaults the flags show filled in.
func Defaults() Config {
	return Config{PGUser: DefaultPGUser, Resync: DefaultResync, Observe: DefaultObserve,
		Backup: BackupConfig{ArchiveTimeout: DefaultArchiveTimeout, QueueMax: DefaultQueueMax, Timeout: DefaultBackupTimeout,
			RepoType: RepoPosix, Azure: AzureConfig{Port: DefaultAzurePort, ContainerPrefix: DefaultAzureContainerPrefix}}}
}

// RegisterFlags binds the flags of the PostgreSQL the agent runs to c; their defaults are
// c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.PGBin, "pg-bin", c.PGBin, "directory of the PostgreSQL server binaries (default: $PG_BIN, pg_config, /usr/lib/postgresql/*/bin)")
	fs.StringVar(&c.PGUser, "pg-user", c.PGUser, "unprivileged OS user that runs PostgreSQL when fog runs as root")
	c.Backup.registerFlags(fs)
}

// Validate fills the defaults of zero values: FogUser is the user this process runs as. It
// refuses backup settings out of range; a PostgreSQL that cannot be found or run is Runner's
// error, a pgBackRest that cannot be found turns backups off.
func (c *Config) Validate() error {
	if err := c.Backup.validate(c.Dir, c.Region); err != nil {
		return err
	}
	if c.PGUser == "" {
		c.PGUser = DefaultPGUser
	}
	if c.Resync == 0 {
		c.Resync = DefaultResync
	}
	if c.Observe == 0 {
		c.Observe = DefaultObserve
	}
	if c.FogUser == "" {
		c.FogUser = "root"
		if u, err := user.Current(); err == nil {
			c.FogUser = u.Username
		}
	}
	return nil
}

// Runner finds the PostgreSQL binaries (PGBin) and returns the runner that runs them as
// PGUser when fog is root.
func (c *Config) Runner(ctx context.Context, log *slog.Logger) (*postgres.Runner, error) {
	bin, err := postgres.FindBinaries(ctx, c.PGBin)
	if err != nil {
		return nil, err
	}
	return postgres.NewRunner(bin, c.PGUser, log)
}
