package agentapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/fogdb/fog/internal/group"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/store"
)

// NameError is a certificate request an agent may not have signed: it names SAN, which is not
// one of its region's instances' or listeners' names or addresses.
type NameError struct {
	Region string
	// SAN is the subject alternative name refused, as the request wrote it.
	SAN string
	// Why says whose it is, when Fog knows: the API's, another region's instance's.
	Why string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("the certificate request names %s, which %s: an agent of %s is signed only its region's instances' and listeners' names and addresses",
		e.SAN, e.Why, e.Region)
}

// sanKey is a subject alternative name in the form names are compared in: an address in its
// canonical text (IPv4-mapped IPv6 as IPv4), a DNS name in lower case without a final dot.
func sanKey(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return "ip " + a.Unmap().String()
	}
	return "dns " + strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// sanPolicy is what an agent's server certificates may name, read from the store when it
// asks: what the control plane wrote for its region, which is what its instances and its
// gateway ask for (agent.worker.configure: an instance's name, DNS names, address and the
// listener addresses of its group; gateway.listen: a listener's name and address).
type sanPolicy struct {
	region string
	// own are the names and addresses of the region's instances and of the listeners of the
	// groups with a side in the region (both regions' listeners: a read-write listener in
	// the partner region hands its sessions to this region's primary, so the primary's
	// certificate names it).
	own map[string]bool
	// others are other regions' instances' names and addresses, with whose they are, minus
	// the listeners above, which the two sides of a group share.
	others map[string]string
	// api are the names and addresses of the Fog API (this server's certificate, and the
	// address and name the agent reached it at): a certificate for one would let an agent
	// stand in for the control plane.
	api map[string]bool
}

// policy reads what region's agent may have signed. r is the agent's request, for the API's
// own names.
func (s *Server) policy(ctx context.Context, r *http.Request, region string) (*sanPolicy, error) {
	p := &sanPolicy{region: region, own: map[string]bool{}, others: map[string]string{}, api: apiNames(r)}
	var cc instance.ClusterConfig
	if _, err := store.Get(ctx, s.st, instance.ClusterKey, &cc); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("read the deployment settings: %w", err)
	}
	groups, err := store.List[group.FailoverGroup](ctx, s.st, group.Prefix)
	if err != nil {
		return nil, fmt.Errorf("read the failover groups: %w", err)
	}
	shared := map[string]bool{}
	for _, g := range groups {
		mine := false
		for _, side := range g.Sides {
			mine = mine || side.Location == region
		}
		if !mine || g.Deleting {
			continue
		}
		names := g.ListenerHosts()
		if cc.DNSSuffix != "" {
			rw, ro := group.ListenerNames(g.Name, g.DNSZone, cc.DNSSuffix)
			names = append(names, rw, ro)
		}
		for _, n := range names {
			if n != "" {
				p.own[sanKey(n)], shared[sanKey(n)] = true, true
			}
		}
	}
	specs, err := store.List[instance.Spec](ctx, s.st, "desired/")
	if err != nil {
		return nil, fmt.Errorf("read the desired state: %w", err)
	}
	for _, sp := range specs {
		if sp.Region == region {
			if sp.Deleted {
				continue
			}
			for _, n := range append(append([]string{sp.Name, sp.Host}, sp.DNSNames...), sp.ExtraIPs...) {
				if n != "" {
					p.own[sanKey(n)] = true
				}
			}
			continue
		}
		// Another region's instance: its name, address and DNS names are its identity, which
		// no other agent may hold, whatever this region's records say.
		for _, n := range append([]string{sp.Name, sp.Host}, sp.DNSNames...) {
			if k := sanKey(n); n != "" && !shared[k] {
				p.others[k] = fmt.Sprintf("belongs to instance %s of region %s", sp.Name, sp.Region)
			}
		}
	}
	return p, nil
}

// apiNames are the Fog API's names and addresses: those its serving certificate names, the
// host the request was sent to and the local address it arrived at.
func apiNames(r *http.Request) map[string]bool {
	out := map[string]bool{}
	add := func(s string) {
		if s != "" {
			out[sanKey(s)] = true
		}
	}
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok && srv.TLSConfig != nil {
		for _, c := range srv.TLSConfig.Certificates {
			leaf := c.Leaf
			if leaf == nil && len(c.Certificate) > 0 {
				leaf, _ = x509.ParseCertificate(c.Certificate[0])
			}
			if leaf == nil {
				continue
			}
			for _, n := range leaf.DNSNames {
				add(n)
			}
			for _, ip := range leaf.IPAddresses {
				add(ip.String())
			}
		}
	}
	if host, _, err := net.SplitHostPort(r.Host); err == nil {
		add(host)
	} else {
		add(r.Host)
	}
	if r.TLS != nil {
		add(r.TLS.ServerName)
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			add(host)
		}
	}
	return out
}

// check returns a *NameError for the first name or address of req that is not the agent's.
func (p *sanPolicy) check(req *x509.CertificateRequest) error {
	if len(req.URIs) > 0 || len(req.EmailAddresses) > 0 {
		san := ""
		if len(req.URIs) > 0 {
			san = req.URIs[0].String()
		} else {
			san = req.EmailAddresses[0]
		}
		return &NameError{Region: p.region, SAN: san, Why: "is a URI or e-mail name, which Fog never signs"}
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return &NameError{Region: p.region, SAN: "nothing", Why: "makes a certificate for no name"}
	}
	sans := append([]string{}, req.DNSNames...)
	for _, ip := range req.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, san := range sans {
		k := sanKey(san)
		switch {
		case p.api[k]:
			return &NameError{Region: p.region, SAN: san, Why: "is the Fog API's"}
		case p.others[k] != "":
			return &NameError{Region: p.region, SAN: san, Why: p.others[k]}
		case !p.own[k]:
			return &NameError{Region: p.region, SAN: san, Why: "is not a name or address of region " + p.region + "'s instances or listeners"}
		}
	}
	return nil
}
