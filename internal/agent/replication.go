package agent

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/store"
)

// peer is how pg_hba.conf admits the failover-group partner of s: the name in its
// replication certificate and the addresses its connections come from, which are its own
// address, the source address it publishes (Egress: what the kernel picks on its machine for
// a connection to us) and, for an address on loopback, 127.0.0.1.
func (w *worker) peer(ctx context.Context, s instance.Spec) *postgres.Peer {
	if s.Peer == nil {
		return nil
	}
	p := &postgres.Peer{CN: devca.ReplicationCN(s.Peer.UID)}
	add := func(a string) {
		if ip := net.ParseIP(a); ip != nil && !slices.Contains(p.Sources, ip.String()) {
			p.Sources = append(p.Sources, ip.String())
		}
	}
	add(s.Peer.Host)
	if ip := net.ParseIP(s.Peer.Host); ip != nil && ip.IsLoopback() && ip.To4() != nil {
		add("127.0.0.1")
	}
	var st instance.Status
	if _, err := store.Get(ctx, w.a.st, instance.StatusKey(s.Peer.Region, s.Peer.UID), &st); err == nil {
		for _, e := range st.Egress {
			add(e)
		}
	}
	slices.Sort(p.Sources)
	return p
}

// egress is the source address of this machine's connections to host:port, as the kernel
// picks it (a UDP socket's connect sends nothing).
func egress(s instance.Spec) []string {
	if s.Peer == nil {
		return nil
	}
	c, err := net.Dial("udp", net.JoinHostPort(s.Peer.Host, strconv.Itoa(s.Peer.Port)))
	if err != nil {
		return nil
	}
	defer c.Close()
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
		return []string{a.IP.String()}
	}
	return nil
}

// refreshHBA rewrites pg_hba.conf of a running, undrained instance when the addresses its
// partner connects from have changed (the partner published a new Egress), and reloads.
func (w *worker) refreshHBA(ctx context.Context, s instance.Spec) error {
	p := w.peer(ctx, s)
	if w.hbaPeer != nil && p != nil && slices.Equal(w.hbaPeer.Sources, p.Sources) && w.hbaPeer.CN == p.CN {
		return nil
	}
	if w.hbaPeer == nil && p == nil {
		return nil
	}
	c := w.a.server(s)
	c.SetPeer(p)
	if err := c.WriteHBA(false); err != nil {
		return err
	}
	w.hbaPeer = p
	w.log.Info("admitting the partner's replication from", "instance", s.Name, "sources", p.Sources)
	return c.Reload(ctx)
}

// upstream is where standby s streams from, with its replication identity: the client
// certificate Fog's CA signs for this instance, made once and renewed a month before it
// expires. The key is made here and never leaves the machine.
func (w *worker) upstream(c Server, s instance.Spec) (*postgres.Upstream, error) {
	u := s.Upstream
	up := &postgres.Upstream{Host: u.Host, Port: u.Port, User: postgres.ReplicationUser,
		Slot: u.Slot, AppName: pgtypes.SlotName(s.UID), CACertPEM: w.a.cfg.CACertPEM}
	if crt, key, ok := currentIdentity(c, s.UID); ok {
		up.CertPEM, up.KeyPEM = crt, key
		return up, nil
	}
	crt, key, err := w.a.ca.IssueReplication(s.UID)
	if err != nil {
		return nil, err
	}
	up.CertPEM, up.KeyPEM = crt, key
	return up, nil
}

func currentIdentity(c Server, uid string) (crt, key []byte, ok bool) {
	crt, err1 := c.ReadFile("replication.crt", 64<<10)
	key, err2 := c.ReadFile("replication.key", 64<<10)
	if err1 != nil || err2 != nil {
		return nil, nil, false
	}
	b, _ := pem.Decode(crt)
	if b == nil {
		return nil, nil, false
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil || cert.Subject.CommonName != devca.ReplicationCN(uid) || time.Until(cert.NotAfter) < 30*24*time.Hour {
		return nil, nil, false
	}
	return crt, key, true
}
