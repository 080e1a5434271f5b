package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/fogdb/fog/internal/store"
)

// etcdFlags are the etcd client options, named as etcdctl names them.
type etcdFlags struct {
	endpoints, cacert, cert, key, user, prefix string
}

func (e *etcdFlags) bind(fl *pflag.FlagSet) {
	fl.StringVar(&e.endpoints, "etcd-endpoints", "", "keep Fog's state in etcd at these comma-separated URLs (https://host:2379,...) instead of the data directory's store file")
	fl.StringVar(&e.cacert, "etcd-cacert", "", "CA bundle that verifies the etcd servers' certificates")
	fl.StringVar(&e.cert, "etcd-cert", "", "client certificate for etcd (with --etcd-key)")
	fl.StringVar(&e.key, "etcd-key", "", "client key for etcd")
	fl.StringVar(&e.user, "etcd-user", "", "etcd user, as user:password (the password may also come from FOG_ETCD_PASSWORD)")
	fl.StringVar(&e.prefix, "etcd-prefix", "/fog/", "key prefix, so several deployments can share one etcd")
}

// config returns the store configuration, nil without --etcd-endpoints.
func (e *etcdFlags) config() (*store.EtcdConfig, error) {
	if e.endpoints == "" {
		for flag, v := range map[string]string{"--etcd-cacert": e.cacert, "--etcd-cert": e.cert, "--etcd-key": e.key, "--etcd-user": e.user} {
			if v != "" {
				return nil, usageErr(flag, "is only meaningful with --etcd-endpoints")
			}
		}
		return nil, nil
	}
	cfg := &store.EtcdConfig{Prefix: e.prefix}
	for _, ep := range strings.Split(e.endpoints, ",") {
		ep = strings.TrimSpace(ep)
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageErr("--etcd-endpoints", "%q is not an etcd URL such as https://10.0.0.5:2379", ep)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	if (e.cert == "") != (e.key == "") {
		return nil, usageErr("--etcd-cert", "--etcd-cert and --etcd-key go together")
	}
	if e.cacert != "" || e.cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if e.cacert != "" {
			pem, err := os.ReadFile(e.cacert)
			if err != nil {
				return nil, usageErr("--etcd-cacert", "%v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usageErr("--etcd-cacert", "%s holds no PEM certificate", e.cacert)
			}
		}
		if e.cert != "" {
			pair, err := tls.LoadX509KeyPair(e.cert, e.key)
			if err != nil {
				return nil, usageErr("--etcd-cert", "%v", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	if e.user != "" {
		name, pw, ok := strings.Cut(e.user, ":")
		if !ok {
			pw = os.Getenv("FOG_ETCD_PASSWORD")
		}
		if name == "" || pw == "" {
			return nil, usageErr("--etcd-user", "give user:password, or the user with FOG_ETCD_PASSWORD set")
		}
		cfg.Username, cfg.Password = name, pw
	}
	return cfg, nil
}
