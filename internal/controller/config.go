package controller

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/backupsched"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/resource"
)

// Config configures the controller. Regions, DNSSuffix and LeaseTTL are the deployment's
// settings (instance.ClusterConfig): the server process fills them in from its own.
type Config struct {
	Regions   []string
	DNSSuffix string
	// LocaleOK reports whether a locale can be used for a new instance.
	LocaleOK func(string) bool
	// OperationTimeout bounds every operation.
	OperationTimeout time.Duration
	// LeaseTTL is the agents' lease TTL: how long the controller waits, on its own clock,
	// without seeing a renewal before it treats an agent's primaries as fenced.
	LeaseTTL time.Duration
	// MinGracePeriod is the shortest grace period an Automatic group may have: whole
	// minutes, Azure's 60 unless an operator allows less, down to 1 (--min-grace-period).
	MinGracePeriod time.Duration
	// ObserveOnly runs the automatic policy of every group as events only.
	ObserveOnly bool
	// ProbeTimeout bounds the control plane's own probe of a primary.
	ProbeTimeout time.Duration
	// ActivityRetentionDays is how long the activity log keeps an operation (default 90).
	ActivityRetentionDays int
	// Backup is the backup schedule the leader keeps (package backupsched).
	Backup backupsched.Config
	// BackupTick is how often the leader runs the backup schedule and judges long-term
	// retention (0: every 30 seconds); tests shorten it.
	BackupTick time.Duration
}

// Defaults of the controller's settings.
const (
	DefaultOperationTimeout      = 10 * time.Minute
	DefaultProbeTimeout          = time.Second
	DefaultActivityRetentionDays = 90
	maxActivityRetentionDays     = 3650
)

// Defaults returns the configuration with every default filled in, as the flags show it.
func Defaults() Config {
	return Config{
		DNSSuffix: instance.DefaultDNSSuffix, OperationTimeout: DefaultOperationTimeout, LeaseTTL: lease.DefaultTTL,
		MinGracePeriod: resource.MinGracePeriodMinutes * time.Minute, ProbeTimeout: DefaultProbeTimeout,
		ActivityRetentionDays: DefaultActivityRetentionDays, Backup: backupsched.Defaults(),
	}
}

// RegisterFlags binds the controller's flags to c; their defaults are c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.MinGracePeriod, "min-grace-period", c.MinGracePeriod, "shortest failoverWithDataLossGracePeriodMinutes an Automatic group may have: Azure's 60m, or down to 1m")
	fs.IntVar(&c.ActivityRetentionDays, "activity-log-retention-days", c.ActivityRetentionDays, "how long the activity log keeps an operation")
	fs.BoolVar(&c.ObserveOnly, "observe-only", c.ObserveOnly, "run every group's automatic failover policy as events only (\"would fail over now\"), never acting")
	c.Backup.RegisterFlags(fs)
}

// Validate checks the configuration and fills the defaults of zero values.
func (c *Config) Validate() error {
	if c.ActivityRetentionDays < 0 || c.ActivityRetentionDays > maxActivityRetentionDays {
		return fmt.Errorf("--activity-log-retention-days %d: give 1 to %d days", c.ActivityRetentionDays, maxActivityRetentionDays)
	}
	if c.MinGracePeriod == 0 {
		c.MinGracePeriod = resource.MinGracePeriodMinutes * time.Minute
	}
	if c.MinGracePeriod%time.Minute != 0 || c.MinGracePeriod < time.Minute || c.MinGracePeriod > resource.MinGracePeriodMinutes*time.Minute {
		return fmt.Errorf("--min-grace-period %s: give whole minutes from 1m to %dm (Azure's minimum, the default)", c.MinGracePeriod, resource.MinGracePeriodMinutes)
	}
	if err := c.Backup.Validate(); err != nil {
		return err
	}
	if len(c.Regions) == 0 {
		return errors.New("controller: at least one region is required")
	}
	if c.DNSSuffix == "" {
		c.DNSSuffix = instance.DefaultDNSSuffix
	}
	if c.OperationTimeout == 0 {
		c.OperationTimeout = DefaultOperationTimeout
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = lease.DefaultTTL
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.ActivityRetentionDays == 0 {
		c.ActivityRetentionDays = DefaultActivityRetentionDays
	}
	return nil
}

// minGraceMinutes is MinGracePeriod in the unit of the API's field.
func (c *Config) minGraceMinutes() int { return int(c.MinGracePeriod / time.Minute) }

// activityRetention is how long the activity log keeps an operation.
func (c *Config) activityRetention() time.Duration {
	return time.Duration(c.ActivityRetentionDays) * 24 * time.Hour
}
