package agentapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/authz"
	"github.com/fogdb/fog/internal/store"
)

// ErrRevoked means the agent's client certificate was revoked, or replaced by a renewal
// longer ago than the grace allows. It is also a store.ErrForbidden, so that an agent stops
// (its watches end, its lease lapses and its guard fences its primaries) instead of
// retrying a certificate no server will take again.
var ErrRevoked error = revokedError{}

type revokedError struct{}

func (revokedError) Error() string        { return "agentapi: agent certificate revoked" }
func (revokedError) Is(target error) bool { return target == store.ErrForbidden }

// revocationError is ErrRevoked with the reason, which is all it says (the server's answer
// carries it to the agent, which adds ErrRevoked's own words).
type revocationError struct{ msg string }

func (e *revocationError) Error() string { return e.msg }
func (e *revocationError) Is(target error) bool {
	return target == ErrRevoked || target == store.ErrForbidden
}

func revokedf(format string, args ...any) error {
	return &revocationError{msg: fmt.Sprintf(format, args...)}
}

// RenewalGrace is how long a certificate stays good after a renewal replaced it: the agent
// moves its connections to the new one at once, and a request already under way on an old
// connection still completes.
const RenewalGrace = 5 * time.Minute

// The server keeps a record of every agent certificate it signs, by serial number, and
// checks it on every request: a revoked certificate is refused from the next request on,
// whatever its expiry says. Agents cannot read these keys (store.AgentScope).
const (
	certPrefix = "agentcerts/"
	// regionRevocationPrefix holds, per region, when all its agents were last revoked: it
	// catches the certificates signed before servers kept records (they have none).
	regionRevocationPrefix = "agentrevocations/"
)

// AgentCert is the record of one agent certificate.
type AgentCert struct {
	// Serial is the certificate's serial number in hex, 32 digits.
	Serial string `json:"serial"`
	Region string `json:"region,omitempty"`
	// Agent names the agent across renewals: the serial of the certificate it joined with.
	Agent   string    `json:"agent"`
	Issued  time.Time `json:"issued,omitzero"`
	Expires time.Time `json:"expires,omitzero"`
	// Renews is the serial of the certificate this one replaced, RenewedTo the one that
	// replaced it (at Renewed).
	Renews    string    `json:"renews,omitempty"`
	RenewedTo string    `json:"renewedTo,omitempty"`
	Renewed   time.Time `json:"renewed,omitzero"`
	// Revoked is when the certificate was revoked, by whom (a principal, or "renewal" for a
	// successor a repeated renewal made useless).
	Revoked   *time.Time `json:"revoked,omitempty"`
	RevokedBy string     `json:"revokedBy,omitempty"`
}

type regionRevocation struct {
	Region string    `json:"region"`
	Before time.Time `json:"before"`
	By     string    `json:"by"`
}

// SerialHex is the form serial numbers take in records, commands and logs.
func SerialHex(n *big.Int) string { return fmt.Sprintf("%032x", n) }

func certKey(serial string) string { return certPrefix + serial }

// normSerial reads a serial as an operator may paste it: hex, with or without colons.
func normSerial(s string) (string, bool) {
	s = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 || n.BitLen() > 128 {
		return "", false
	}
	return SerialHex(n), true
}

// refused returns why the certificate of rec may not be used at now, or nil.
func (rec *AgentCert) refused(now time.Time, grace time.Duration) error {
	switch {
	case rec.Revoked != nil:
		return revokedf("certificate %s of agent %s was revoked at %s by %s; join the agent again with a new token",
			rec.Serial, rec.Agent, rec.Revoked.Format(time.RFC3339), rec.RevokedBy)
	case rec.RenewedTo != "" && now.After(rec.Renewed.Add(grace)):
		return revokedf("certificate %s was renewed at %s (to %s); the agent must use the new one",
			rec.Serial, rec.Renewed.Format(time.RFC3339), rec.RenewedTo)
	}
	return nil
}

// checkCert returns ErrRevoked when the agent certificate cert of region may not be used
// (any more), or the store's error when it cannot tell: a certificate is trusted only when
// its record says so.
func (s *Server) checkCert(ctx context.Context, region string, cert *x509.Certificate) error {
	var rec AgentCert
	_, err := store.Get(ctx, s.st, certKey(SerialHex(cert.SerialNumber)), &rec)
	switch {
	case err == nil:
		if rec.Region != "" && rec.Region != region {
			return revokedf("certificate %s was signed for region %s", rec.Serial, rec.Region)
		}
		return rec.refused(time.Now(), s.RenewalGrace)
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("check the agent certificate: %w", err)
	}
	// No record: a certificate signed before servers kept them. Only a revocation of the
	// whole region after it was signed can have revoked it.
	var rr regionRevocation
	if _, err := store.Get(ctx, s.st, regionRevocationPrefix+region, &rr); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("check the agent certificate: %w", err)
	}
	if cert.NotBefore.Before(rr.Before) {
		return revokedf("every agent certificate of region %s signed before %s was revoked by %s; join the agent again with a new token",
			region, rr.Before.Format(time.RFC3339), rr.By)
	}
	return nil
}

// newRecord is the record of a certificate just signed.
func newRecord(cert *x509.Certificate, region, agent string) AgentCert {
	serial := SerialHex(cert.SerialNumber)
	if agent == "" {
		agent = serial
	}
	return AgentCert{Serial: serial, Region: region, Agent: agent, Issued: time.Now().UTC(), Expires: cert.NotAfter.UTC()}
}

// renewalOps are the transaction that records the renewal of old (of region) to next: the
// new record, the old one marked as replaced and, when old had been renewed already (the
// agent never got that answer, or lost it), that earlier successor revoked, since no agent
// holds it.
func (s *Server) renewalOps(ctx context.Context, region string, old, next *x509.Certificate) ([]store.Cond, []store.Op, error) {
	oldSerial := SerialHex(old.SerialNumber)
	var rec AgentCert
	rev, err := store.Get(ctx, s.st, certKey(oldSerial), &rec)
	if errors.Is(err, store.ErrNotFound) {
		rec, rev = AgentCert{Serial: oldSerial, Region: region, Agent: oldSerial, Issued: old.NotBefore.UTC(), Expires: old.NotAfter.UTC()}, 0
	} else if err != nil {
		return nil, nil, err
	}
	now := time.Now().UTC()
	nrec := newRecord(next, region, rec.Agent)
	nrec.Renews = oldSerial
	conds := []store.Cond{{Key: certKey(oldSerial), Rev: rev}, {Key: certKey(nrec.Serial), Rev: 0}}
	var ops []store.Op
	if prev := rec.RenewedTo; prev != "" {
		var p AgentCert
		prevRev, err := store.Get(ctx, s.st, certKey(prev), &p)
		if err == nil && p.Revoked == nil {
			p.Revoked, p.RevokedBy = &now, "renewal"
			conds = append(conds, store.Cond{Key: certKey(prev), Rev: prevRev})
			ops = append(ops, store.PutOp(certKey(prev), p))
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
	}
	rec.RenewedTo, rec.Renewed = nrec.Serial, now
	ops = append(ops, store.PutOp(certKey(oldSerial), rec), store.PutOp(certKey(nrec.Serial), nrec))
	return conds, ops, nil
}

// Revocation selects the agent certificates to revoke: every one of a region (those signed
// before records were kept too), every one of an agent (its join certificate and its
// renewals), or one by serial number. Exactly one is set.
type Revocation struct {
	Region string `json:"region,omitempty"`
	Agent  string `json:"agent,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// ErrNoSuchAgent means a revocation selected no certificate.
var ErrNoSuchAgent = errors.New("agentapi: no agent certificate matches")

// errBadRevocation is a revocation that does not say what to revoke.
var errBadRevocation = errors.New("give exactly one of region, agent (an agent id from `fog agent list`, 8 characters or more) and serial")

// Revoke revokes the certificates sel selects, for principal by, and returns their records.
// The servers refuse them from their next request on.
func Revoke(ctx context.Context, st store.Store, sel Revocation, by string) ([]AgentCert, error) {
	n := 0
	for _, f := range []string{sel.Region, sel.Agent, sel.Serial} {
		if f != "" {
			n++
		}
	}
	if n != 1 || (sel.Agent != "" && len(sel.Agent) < 8) {
		return nil, errBadRevocation
	}
	serial := ""
	if sel.Serial != "" {
		var ok bool
		if serial, ok = normSerial(sel.Serial); !ok {
			return nil, fmt.Errorf("%w: %q is not a certificate serial number in hex", errBadRevocation, sel.Serial)
		}
	}
	agent := strings.ToLower(sel.Agent)
	for {
		kvs, err := st.List(ctx, certPrefix)
		if err != nil {
			return nil, fmt.Errorf("read the agent certificates: %w", err)
		}
		now := time.Now().UTC()
		var conds []store.Cond
		var ops []store.Op
		var out []AgentCert
		for _, kv := range kvs {
			var rec AgentCert
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
			}
			match := (sel.Region != "" && rec.Region == sel.Region) || (agent != "" && strings.HasPrefix(rec.Agent, agent)) ||
				(serial != "" && rec.Serial == serial)
			if !match {
				continue
			}
			if rec.Revoked == nil {
				rec.Revoked, rec.RevokedBy = &now, by
				conds = append(conds, store.Cond{Key: kv.Key, Rev: kv.Rev})
				ops = append(ops, store.PutOp(kv.Key, rec))
			}
			out = append(out, rec)
		}
		switch {
		case serial != "" && len(out) == 0:
			// A certificate signed before records were kept: record it as revoked.
			rec := AgentCert{Serial: serial, Agent: serial, Revoked: &now, RevokedBy: by}
			conds = append(conds, store.Cond{Key: certKey(serial), Rev: 0})
			ops = append(ops, store.PutOp(certKey(serial), rec))
			out = append(out, rec)
		case sel.Region != "":
			ops = append(ops, store.PutOp(regionRevocationPrefix+sel.Region, regionRevocation{Region: sel.Region, Before: now, By: by}))
		case len(out) == 0:
			return nil, fmt.Errorf("%w agent %s", ErrNoSuchAgent, sel.Agent)
		}
		if sel.Agent != "" && agentsIn(out) > 1 {
			return nil, fmt.Errorf("%w: agent id %s is the start of several agents' ids; give more of it", errBadRevocation, sel.Agent)
		}
		if len(ops) == 0 {
			return out, nil // revoked already
		}
		// A renewal or another revocation in between changed a record: read them again, so
		// that a certificate renewed meanwhile is revoked too.
		if err := st.Txn(ctx, conds, ops); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("record the revocation: %w", err)
		}
		return out, nil
	}
}

func agentsIn(recs []AgentCert) int {
	var ids []string
	for _, r := range recs {
		if !slices.Contains(ids, r.Agent) {
			ids = append(ids, r.Agent)
		}
	}
	return len(ids)
}

// Agents returns the record of every agent certificate, oldest first.
func Agents(ctx context.Context, st store.Store) ([]AgentCert, error) {
	recs, err := store.List[AgentCert](ctx, st, certPrefix)
	if err != nil {
		return nil, fmt.Errorf("read the agent certificates: %w", err)
	}
	slices.SortFunc(recs, func(a, b AgentCert) int { return a.Issued.Compare(b.Issued) })
	return recs, nil
}

// pruneExpired deletes the records of certificates that expired a day ago or more: TLS
// refuses those before any record is read. Best effort: a record left is harmless.
func pruneExpired(ctx context.Context, st store.Store) {
	kvs, err := st.List(ctx, certPrefix)
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-24 * time.Hour)
	var conds []store.Cond
	var ops []store.Op
	for _, kv := range kvs {
		var rec AgentCert
		if json.Unmarshal(kv.Value, &rec) == nil && !rec.Expires.IsZero() && rec.Expires.Before(cutoff) {
			conds = append(conds, store.Cond{Key: kv.Key, Rev: kv.Rev})
			ops = append(ops, store.Op{Key: kv.Key, Delete: true})
		}
	}
	if len(ops) > 0 {
		_ = st.Txn(ctx, conds, ops)
	}
}

// The admin endpoints (listing and revoking agent certificates) take the API's bearer
// token, authenticated as the API authenticates it (authz.Tokens), and the role the API
// would require of Fog's own endpoints: Owner at the root scope revokes, any role that reads
// at the root lists.
const (
	actionAgentsRead   = "Fog/agents/read"
	actionAgentsDelete = "Fog/agents/delete"
)

var errAdminToken = errors.New("send 'Authorization: Bearer <token>' with a valid API token (the one in the client config `fog server` wrote)")

// adminPrincipal returns the principal of r's bearer token when it may perform action at
// the root scope. status is the HTTP status of a refusal.
func (s *Server) adminPrincipal(r *http.Request, action string) (principal string, status int, err error) {
	info, err := authz.NewTokens(s.st).Authenticate(r)
	switch {
	case errors.Is(err, authz.ErrUnauthenticated):
		return "", http.StatusUnauthorized, errAdminToken
	case err != nil:
		return "", http.StatusServiceUnavailable, fmt.Errorf("check the API token: %w", err)
	}
	allowed, err := authz.New(s.st).Allowed(r.Context(), info.Name, action, "/")
	if err != nil {
		return "", http.StatusServiceUnavailable, fmt.Errorf("check the role assignments: %w", err)
	}
	// A tenant's principal never manages the deployment's machines, whatever its roles.
	if !allowed || info.TenantID != "" {
		return "", http.StatusForbidden, fmt.Errorf("principal %s may not perform %s at the root scope (Owner may)", info.Name, action)
	}
	return info.Name, http.StatusOK, nil
}

// writeAdminErr answers an admin endpoint's error in the API's (ARM's) shape, which the CLI
// reads.
func writeAdminErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]errorBody{"error": {Code: code, Message: msg}})
}

func (s *Server) admin(w http.ResponseWriter, r *http.Request, action string) (string, bool) {
	principal, status, err := s.adminPrincipal(r, action)
	if err == nil {
		return principal, true
	}
	code := map[int]string{http.StatusUnauthorized: "InvalidAuthenticationToken", http.StatusForbidden: "AuthorizationFailed"}[status]
	msg := err.Error()
	if code == "" {
		code = "StoreUnavailable"
		msg = s.failure(r, code, "Fog could not check the request's token and roles", err)
	}
	writeAdminErr(w, status, code, msg)
	return "", false
}

// listAgents answers the record of every agent certificate (`fog agent list`).
func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.admin(w, r, actionAgentsRead); !ok {
		return
	}
	recs, err := Agents(r.Context(), s.st)
	if err != nil {
		writeAdminErr(w, http.StatusServiceUnavailable, "StoreUnavailable", s.failure(r, "StoreUnavailable", "Fog could not read the agent records", err))
		return
	}
	writeJSON(w, map[string]any{"value": recs})
}

// revoke revokes agent certificates (`fog agent revoke`).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	principal, ok := s.admin(w, r, actionAgentsDelete)
	if !ok {
		return
	}
	var sel Revocation
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&sel); err != nil {
		writeAdminErr(w, http.StatusBadRequest, "InvalidRequestContent", "the body is not the expected JSON: "+err.Error())
		return
	}
	if sel.Region != "" && !s.regions[sel.Region] {
		regions := make([]string, 0, len(s.regions))
		for r := range s.regions {
			regions = append(regions, r)
		}
		slices.Sort(regions)
		writeAdminErr(w, http.StatusBadRequest, "InvalidRegion", fmt.Sprintf("'region' must be one of this deployment's regions %v, not %q", regions, sel.Region))
		return
	}
	recs, err := Revoke(r.Context(), s.st, sel, principal)
	switch {
	case errors.Is(err, errBadRevocation):
		writeAdminErr(w, http.StatusBadRequest, "InvalidRevocation", err.Error())
		return
	case errors.Is(err, ErrNoSuchAgent):
		writeAdminErr(w, http.StatusNotFound, "AgentNotFound", err.Error())
		return
	case err != nil:
		writeAdminErr(w, http.StatusServiceUnavailable, "StoreUnavailable", s.failure(r, "StoreUnavailable", "Fog could not revoke the agent certificates", err))
		return
	}
	serials := make([]string, 0, len(recs))
	for _, rec := range recs {
		serials = append(serials, rec.Serial)
	}
	s.log.Warn("agent certificates revoked", "by", principal, "region", sel.Region, "agent", sel.Agent, "serial", sel.Serial, "serials", serials)
	writeJSON(w, map[string]any{"value": recs})
}
