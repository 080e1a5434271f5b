package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/resource"
)

// endpoint is one server a connection string names: the name its certificate carries (for
// verify-full) and the address it is reached at.
type endpoint struct {
	name, addr string
	port       int
}

// caFile is the absolute path of the CA certificate beside the client config, written there
// from the config when missing, so a connection string can name a file.
func (c *client) caFile() (string, error) {
	dir, err := filepath.Abs(filepath.Dir(c.config))
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "ca.crt")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	b, err := os.ReadFile(c.config)
	if err != nil {
		return "", err
	}
	var cc struct {
		CACert string `json:"caCert"`
	}
	if err := json.Unmarshal(b, &cc); err != nil || cc.CACert == "" {
		return "", fmt.Errorf("client config %s has no caCert", c.config)
	}
	return p, os.WriteFile(p, []byte(cc.CACert), 0o644)
}

// connStrings renders the connection strings for eps, in each client's form. attrs is
// libpq's target_session_attrs for a list of several servers ("" for one).
func connStrings(eps []endpoint, user, db, ca, attrs string) map[string]string {
	var names, addrs, ports []string
	for _, e := range eps {
		names, addrs, ports = append(names, e.name), append(addrs, e.addr), append(ports, fmt.Sprint(e.port))
	}
	kv := fmt.Sprintf("host=%s hostaddr=%s port=%s user=%s dbname=%s sslmode=verify-full sslrootcert=%s",
		strings.Join(names, ","), strings.Join(addrs, ","), strings.Join(ports, ","), user, db, ca)
	var hostports, ipports []string
	for i := range eps {
		hostports = append(hostports, fmt.Sprintf("%s:%s", names[i], ports[i]))
		ipports = append(ipports, fmt.Sprintf("%s:%s", addrs[i], ports[i]))
	}
	q := url.Values{}
	q.Set("sslmode", "verify-full")
	q.Set("sslrootcert", ca)
	q.Set("hostaddr", strings.Join(addrs, ","))
	jq := url.Values{}
	jq.Set("user", user)
	jq.Set("ssl", "true")
	jq.Set("sslmode", "verify-full")
	jq.Set("sslrootcert", ca)
	pq := url.Values{}
	pq.Set("sslmode", "verify-full")
	pq.Set("sslrootcert", ca)
	if attrs != "" {
		kv += " target_session_attrs=" + attrs
		q.Set("target_session_attrs", attrs)
		pq.Set("target_session_attrs", attrs)
		// pgjdbc names these targetServerType: primary, preferSecondary.
		jq.Set("targetServerType", map[string]string{"read-write": "primary", "prefer-standby": "preferSecondary"}[attrs])
	}
	return map[string]string{
		// libpq: psql and every driver built on it; the name is verified, the address dialed.
		"psql": kv,
		"uri":  fmt.Sprintf("postgresql://%s@%s/%s?%s", url.PathEscape(user), strings.Join(hostports, ","), url.PathEscape(db), query(q)),
		// pgjdbc and pgx dial the address; the certificates name it too.
		"jdbc": fmt.Sprintf("jdbc:postgresql://%s/%s?%s", strings.Join(ipports, ","), url.PathEscape(db), query(jq)),
		"pgx":  fmt.Sprintf("postgres://%s@%s/%s?%s", url.PathEscape(user), strings.Join(ipports, ","), url.PathEscape(db), query(pq)),
	}
}

var connClients = []string{"psql", "uri", "jdbc", "pgx"}

// query encodes a URL query leaving '/' and ',' readable (both are allowed there), so a path
// such as sslrootcert's reads as itself.
func query(v url.Values) string {
	return strings.NewReplacer("%2F", "/", "%2C", ",").Replace(v.Encode())
}

// printConnStrings prints one client's string alone (for $(...) in scripts), or with
// --client all every form as JSON.
func (g *globals) printConnStrings(client string, forms map[string]string) error {
	if client == "all" {
		b, _ := json.Marshal(forms)
		return g.print(b)
	}
	s, ok := forms[client]
	if !ok {
		keys := make([]string, 0, len(forms))
		for k := range forms {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return usageErr("--client", "use one of %s, or all", strings.Join(keys, ", "))
	}
	_, err := fmt.Fprintln(g.io.Out, s)
	return err
}

func propsOf(b []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	p, _ := m["properties"].(map[string]any)
	if p == nil {
		return nil, fmt.Errorf("no properties in %s", b)
	}
	return p, nil
}

// instanceEndpoint reads the instance with id: the endpoint a connection string names and its
// administrator login.
func (c *client) instanceEndpoint(ctx context.Context, id string) (endpoint, string, error) {
	var mi fogclient.ManagedInstance
	if _, err := c.Do(ctx, http.MethodGet, id, nil, &mi); err != nil {
		return endpoint{}, "", c.explain(err)
	}
	p := mi.Properties
	login := ""
	if p.AdministratorLogin != nil {
		login = *p.AdministratorLogin
	}
	return endpoint{name: p.FullyQualifiedDomainName, addr: p.Host, port: p.Port}, login, nil
}

func newMIConnStringCommand(g *globals) *cobra.Command {
	var rg, name, client, db, user string
	cmd := &cobra.Command{
		Use:   "show-connection-string",
		Short: "Print a ready connection string for an instance (psql, uri, jdbc, pgx; TLS verify-full with the CA's absolute path)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ep, login, err := c.instanceEndpoint(cmd.Context(), c.InstancePath(rg, name))
			if err != nil {
				return shown(err)
			}
			ca, err := c.caFile()
			if err != nil {
				return err
			}
			if user == "" {
				user = login
			}
			return g.printConnStrings(client, connStrings([]endpoint{ep}, user, db, ca, ""))
		},
	}
	cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group")
	cmd.Flags().StringVarP(&name, "name", "n", "", "managed instance name")
	cmd.Flags().StringVar(&client, "client", "psql", "form: "+strings.Join(connClients, ", ")+", or all (JSON)")
	cmd.Flags().StringVarP(&db, "database", "d", "postgres", "database")
	cmd.Flags().StringVarP(&user, "user", "u", "", "login (default: the instance's administratorLogin)")
	_ = cmd.MarkFlagRequired("resource-group")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newGroupConnStringCommand(g *globals) *cobra.Command {
	var rg, loc, name, client, db, user, listener string
	var multiHost bool
	cmd := &cobra.Command{
		Use:   "show-connection-string",
		Short: "Print a ready connection string for a group's listener, or (--multi-host) both instances with no relay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if listener != "read-write" && listener != "read-only" {
				return usageErr("--listener", "use read-write or read-only")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			grp, err := c.GetFailoverGroup(cmd.Context(), rg, loc, name)
			if err != nil {
				return shown(c.explain(err))
			}
			p := grp.Properties
			ca, err := c.caFile()
			if err != nil {
				return err
			}
			pairs := p.ManagedInstancePairs
			if user == "" && len(pairs) > 0 {
				if _, login, err := c.instanceEndpoint(cmd.Context(), pairs[0].PrimaryManagedInstanceID); err == nil {
					user = login
				}
			}
			if !multiHost {
				var l *resource.Listener
				if p.Listeners != nil {
					l = map[string]*resource.Listener{"read-write": &p.Listeners.ReadWrite, "read-only": &p.Listeners.ReadOnly}[listener]
				}
				if l == nil || *l == (resource.Listener{}) {
					return fmt.Errorf("the group shows no %s listener", listener)
				}
				ep := endpoint{name: l.FQDN, addr: l.Host, port: l.Port}
				return g.printConnStrings(client, connStrings([]endpoint{ep}, user, db, ca, ""))
			}
			// Both instances, as pg_auto_failover's users connect: libpq finds the primary
			// (target_session_attrs), and a fenced old primary refuses writes.
			var eps []endpoint
			for _, pair := range pairs {
				for _, id := range []string{pair.PrimaryManagedInstanceID, pair.PartnerManagedInstanceID} {
					ep, _, err := c.instanceEndpoint(cmd.Context(), id)
					if err != nil {
						return err
					}
					eps = append(eps, ep)
				}
			}
			attrs := "read-write"
			if listener == "read-only" {
				attrs = "prefer-standby"
			}
			return g.printConnStrings(client, connStrings(eps, user, db, ca, attrs))
		},
	}
	cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "resource group of the instance on this side")
	cmd.Flags().StringVarP(&loc, "location", "l", "", "region of the instance on this side")
	cmd.Flags().StringVarP(&name, "name", "n", "", "failover group name")
	cmd.Flags().StringVar(&listener, "listener", "read-write", "read-write (always the primary) or read-only (the secondary)")
	cmd.Flags().BoolVar(&multiHost, "multi-host", false, "name both instances instead of the listener (no relay; libpq picks the primary)")
	cmd.Flags().StringVar(&client, "client", "psql", "form: "+strings.Join(connClients, ", ")+", or all (JSON)")
	cmd.Flags().StringVarP(&db, "database", "d", "postgres", "database")
	cmd.Flags().StringVarP(&user, "user", "u", "", "login (default: the primary's administratorLogin)")
	for _, f := range []string{"resource-group", "location", "name"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}
