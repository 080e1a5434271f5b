package gateway

import (
	"time"

	"github.com/spf13/pflag"
)

// Config configures the gateway.
type Config struct {
	// HoldTimeout bounds how long a new connection waits while a failover switches.
	HoldTimeout time.Duration
	// WatchPrefixes are the store prefixes whose changes may change routes.
	WatchPrefixes []string
	// Resync recomputes routes periodically (heartbeats expire without a write).
	Resync time.Duration
	// Limits on connections through the gateway's listeners, in total and per client
	// address, and on connections held waiting for a primary; zero takes the defaults.
	// A connection counts from its accept, before it has sent anything: cancel requests
	// and connections that never send a first packet count too.
	MaxConns, MaxConnsPerClient, MaxHeld, MaxHeldPerClient int
	// MaxCancels bounds the cancel requests forwarded to servers at once; zero takes the
	// default.
	MaxCancels int
	// KernelSplice splices established sessions in the kernel (a BPF sockmap, which needs
	// CAP_BPF and CAP_NET_ADMIN) instead of relaying them in user space. Off by default: the
	// kernel hands the splice program whole received segments, and a retransmitted segment
	// that overlaps bytes the socket already received (TCP queues it whole and its readers
	// skip the old part by sequence number) reaches the other side twice.
	KernelSplice bool
}

// Default limits.
const (
	DefaultMaxConns          = 10000
	DefaultMaxConnsPerClient = 2000
	DefaultMaxHeld           = 2000
	DefaultMaxHeldPerClient  = 500
	DefaultMaxCancels        = 32
)

// Default timings.
const (
	DefaultHoldTimeout = 30 * time.Second
	DefaultResync      = time.Second
)

// Defaults returns the configuration with every default filled in, as the flags show it.
func Defaults() Config {
	c := Config{}
	_ = c.Validate()
	return c
}

// RegisterFlags binds the flags that cap the listeners' connections and choose how they
// relay to c; their defaults are c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.MaxConns, "listener-max-connections", c.MaxConns, "connections the region's listeners take in all")
	fs.IntVar(&c.MaxConnsPerClient, "listener-max-connections-per-client", c.MaxConnsPerClient, "connections the listeners take from one client address")
	fs.IntVar(&c.MaxHeld, "listener-max-held", c.MaxHeld, "connections the listeners hold in all while waiting for a primary")
	fs.IntVar(&c.MaxHeldPerClient, "listener-max-held-per-client", c.MaxHeldPerClient, "connections the listeners hold from one client address while waiting for a primary")
	fs.BoolVar(&c.KernelSplice, "listener-kernel-splice", c.KernelSplice, "splice established sessions in the kernel (a BPF sockmap; needs CAP_BPF and CAP_NET_ADMIN) instead of relaying them in user space; unsafe: a retransmitted segment that overlaps bytes already received reaches the server or the client twice")
	// The relay in user space is the default now; the flag that asked for it is kept so that
	// existing command lines still start.
	var userSpace bool
	fs.BoolVar(&userSpace, "listener-user-space-relay", false, "relay established sessions in user space (the default)")
	_ = fs.MarkDeprecated("listener-user-space-relay", "the listeners relay in user space by default")
}

// Validate fills the defaults of zero values; a limit of zero or less takes its default, so
// there is nothing it refuses.
func (c *Config) Validate() error {
	for _, l := range []struct {
		v   *int
		def int
	}{{&c.MaxConns, DefaultMaxConns}, {&c.MaxConnsPerClient, DefaultMaxConnsPerClient}, {&c.MaxHeld, DefaultMaxHeld}, {&c.MaxHeldPerClient, DefaultMaxHeldPerClient}, {&c.MaxCancels, DefaultMaxCancels}} {
		if *l.v <= 0 {
			*l.v = l.def
		}
	}
	if c.HoldTimeout == 0 {
		c.HoldTimeout = DefaultHoldTimeout
	}
	if c.Resync == 0 {
		c.Resync = DefaultResync
	}
	return nil
}
