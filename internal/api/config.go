package api

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/spf13/pflag"
)

// Config is where the API listens and how clients reach it.
type Config struct {
	// Listen is the address of the HTTPS API (the agents' endpoint shares it).
	Listen string
	// Names are extra host names and addresses the API's certificate names (`fog server
	// --advertise`), for agents and clients on other machines.
	Names []string
	// ExternalURL is the API's URL as clients reach it (a load balancer's, say); operation
	// URLs point there. Default: the listen address (or the first Names entry).
	ExternalURL string
	// RateLimit is each principal's requests per second (bursts of twice as many); 0 sets no
	// limit. The flag's default is DefaultRateLimit.
	RateLimit float64
}

// Defaults of the API's settings.
const (
	DefaultListen    = "127.0.0.1:7443"
	DefaultRateLimit = 100
)

// Defaults returns the configuration with every default filled in, as the flags show it.
func Defaults() Config {
	return Config{Listen: DefaultListen, RateLimit: DefaultRateLimit}
}

// RegisterFlags binds the flags that fog up and fog server share to c (their defaults are
// c's values). --listen and --advertise are the processes' own: their help differs.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.Float64Var(&c.RateLimit, "rate-limit", c.RateLimit, "API requests per second per principal (bursts of twice as many); 0 for no limit")
	fs.StringVar(&c.ExternalURL, "external-url", c.ExternalURL, "the API's URL as clients reach it (https://host:port); operation URLs point there (default: the listen address)")
}

// Validate checks the configuration and fills the defaults of zero values.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %w", c.Listen, err)
	}
	if c.ExternalURL != "" {
		u, err := url.Parse(c.ExternalURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("--external-url %q: give the API's URL as clients reach it, such as https://fog.example.com:7443", c.ExternalURL)
		}
	}
	return nil
}

// URL is the API's URL as clients reach it, once it listens on addr: ExternalURL when set,
// else the listen address, with the first of Names for an unspecified host.
func (c *Config) URL(addr net.Addr) string {
	if c.ExternalURL != "" {
		return strings.TrimRight(c.ExternalURL, "/")
	}
	host, port, _ := net.SplitHostPort(addr.String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() && len(c.Names) > 0 {
		host = c.Names[0]
	}
	return "https://" + net.JoinHostPort(host, port)
}
