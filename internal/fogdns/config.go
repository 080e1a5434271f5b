package fogdns

import (
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/instance"
)

// Config configures the server.
type Config struct {
	// Listen is where the server answers, over UDP and TCP ("" runs none); the process that
	// runs the server listens there (Listen) and hands New the address it got.
	Listen string
	// Suffix is the zone (the deployment's DNS suffix, such as database.fog.internal).
	Suffix string
	// Mode is ModeGateway or ModeDirect.
	Mode string
	// TTL of every answer (default 5 s).
	TTL time.Duration
	// NSAddr is the address given for the zone's name server, ns1.<suffix>.
	NSAddr net.IP
}

// DefaultTTL is the TTL of every answer unless Config.TTL says otherwise.
const DefaultTTL = 5 * time.Second

// Defaults returns the configuration with every default filled in, as the flags show it:
// no server (Listen ""), the default suffix, listener names in gateway mode.
func Defaults() Config {
	return Config{Suffix: instance.DefaultDNSSuffix, Mode: ModeGateway, TTL: DefaultTTL}
}

// RegisterFlags binds the DNS server's flags to c; their defaults are c's values.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Listen, "dns-listen", c.Listen, "address of the authoritative DNS server for instance and listener names, UDP and TCP (\"\" for none)")
	fs.StringVar(&c.Mode, "dns-mode", c.Mode, "what listener names resolve to: gateway (the listeners, which relay) or direct (the current primary and secondary themselves)")
}

// Validate checks the configuration and fills the defaults of zero values.
func (c *Config) Validate() error {
	switch c.Mode {
	case "":
		c.Mode = ModeGateway
	case ModeGateway, ModeDirect:
	default:
		return fmt.Errorf("--dns-mode %q: use %s or %s", c.Mode, ModeGateway, ModeDirect)
	}
	if c.Suffix == "" {
		c.Suffix = instance.DefaultDNSSuffix
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	return nil
}
