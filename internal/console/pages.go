package console

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/resource"
)

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/instances", http.StatusSeeOther)
	})
	m.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/instances", http.StatusSeeOther)
	})
	m.HandleFunc("GET /console/signin", c.signinPage)
	m.HandleFunc("POST /console/signin", c.signin)
	m.HandleFunc("POST /console/signout", c.authed(c.signout))
	m.HandleFunc("GET /console/instances", c.authed(c.instancesPage))
	m.HandleFunc("GET /console/instances/new", c.authed(c.newInstancePage))
	m.HandleFunc("POST /console/instances", c.authed(c.createInstance))
	m.HandleFunc("GET /console/instances/{rg}/{name}", c.authed(c.instancePage))
	m.HandleFunc("POST /console/instances/{rg}/{name}/delete", c.authed(c.deleteInstance))
	m.HandleFunc("POST /console/instances/{rg}/{name}/databases", c.authed(c.createDatabase))
	m.HandleFunc("GET /console/instances/{rg}/{name}/databases/{db}", c.authed(c.databasePage))
	m.HandleFunc("POST /console/instances/{rg}/{name}/databases/{db}/restore", c.authed(c.restoreDatabase))
	m.HandleFunc("POST /console/instances/{rg}/{name}/databases/{db}/retention", c.authed(c.setRetention))
	m.HandleFunc("POST /console/instances/{rg}/{name}/dropped/restore", c.authed(c.restoreDropped))
	m.HandleFunc("POST /console/instances/{rg}/{name}/recover", c.authed(c.recoverDatabase))
	m.HandleFunc("POST /console/instances/{rg}/{name}/databases/{db}/ltr-policy", c.authed(c.setLTRPolicy))
	m.HandleFunc("POST /console/instances/{rg}/{name}/databases/{db}/ltr-backups/restore", c.authed(c.restoreLTRBackup))
	m.HandleFunc("POST /console/instances/{rg}/{name}/databases/{db}/ltr-backups/delete", c.authed(c.deleteLTRBackup))
	m.HandleFunc("GET /console/groups", c.authed(c.groupsPage))
	m.HandleFunc("GET /console/groups/new", c.authed(c.newGroupPage))
	m.HandleFunc("POST /console/groups", c.authed(c.createGroup))
	m.HandleFunc("GET /console/groups/{rg}/{loc}/{name}", c.authed(c.groupPage))
	m.HandleFunc("GET /console/groups/{rg}/{loc}/{name}/live", c.authed(c.groupLive))
	m.HandleFunc("POST /console/groups/{rg}/{loc}/{name}/{action}", c.authed(c.groupAction))
	m.HandleFunc("GET /console/operation", c.authed(c.operationPage))
	m.HandleFunc("GET /console/operation/status", c.authed(c.operationStatus))
	c.mux = m
}

// page is what every template gets.
type page struct {
	Title     string
	CSRF      string
	Principal string
	Sub       string
	Error     *apiError
	Data      any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, a *apiClient, title string, data any, err error) {
	p := page{Title: title, Data: data}
	if a != nil {
		p.CSRF, p.Principal, p.Sub = a.s.csrf, a.s.principal, a.s.sub
	}
	var ae *apiError
	if errors.As(err, &ae) {
		p.Error = ae
	} else if err != nil {
		p.Error = &apiError{Code: "Error", Message: err.Error()}
	}
	t := c.tmpl[name]
	tmplName := "layout"
	if r.Header.Get("HX-Request") != "" && t.Lookup("fragment") != nil {
		tmplName = "fragment"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if xerr := t.ExecuteTemplate(w, tmplName, p); xerr != nil {
		c.cfg.Log.Error("console: render", "template", name, "err", xerr)
	}
}

// ---- sign in ----

func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "signin.html", nil, "Sign in", map[string]string{"Sub": c.cfg.Subscription, "Next": safeNext(r.URL.Query().Get("next"))}, nil)
}

// signin checks the token by asking the API for the subscription's instances: 401 is a
// wrong token; any other answer (403 included: a role without read) is a valid one.
func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "Refused: sign in from the Fog console's own page.", http.StatusForbidden)
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	sub := strings.TrimSpace(r.PostFormValue("subscription"))
	if sub == "" {
		sub = c.cfg.Subscription
	}
	next := safeNext(r.PostFormValue("next"))
	s := &session{token: tok, sub: sub}
	a := c.newAPIClient(r, s)
	var ae *apiError
	_, err := a.call("GET", fmt.Sprintf("/subscriptions/%s/providers/Microsoft.Sql/managedInstances", url.PathEscape(sub)), nil, nil)
	if tok == "" || errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusBadRequest) {
		if tok == "" {
			err = &apiError{Code: "AuthenticationFailed", Message: "Enter an API token: the one in the client config fog up wrote (.fog/client.json), or one from `fog token create`."}
		}
		c.cfg.Log.Info("console: sign-in refused", "remote", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "signin.html", nil, "Sign in", map[string]string{"Sub": sub, "Next": next}, err)
		return
	}
	s.csrf, s.principal, s.used = randomID(), principalOf(tok), time.Now()
	if c.cfg.Principal != nil {
		if name := c.cfg.Principal(r.Context(), tok); name != "" {
			s.principal = name
		}
	}
	id := randomID()
	c.mu.Lock()
	c.sessions[id] = s
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/console/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: int(c.cfg.SessionTTL.Seconds())})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// principalOf shows which token is signed in without showing it: its first characters.
func principalOf(tok string) string {
	if len(tok) > 24 {
		return "token " + tok[:8] + "…"
	}
	return "a token"
}

func (c *Console) signout(w http.ResponseWriter, r *http.Request, a *apiClient) {
	if ck, err := r.Cookie(CookieName); err == nil {
		c.mu.Lock()
		delete(c.sessions, ck.Value)
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/console/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

// safeNext keeps a redirect inside the console.
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/console/") || strings.HasPrefix(n, "//") || strings.Contains(n, "\\") {
		return "/console/instances"
	}
	return n
}

// ---- instances ----

type instanceRow struct {
	resource.InstanceJSON
	RG      string
	InGroup string
}

func rgOf(id string) string {
	parts := strings.Split(id, "/")
	for i := 0; i+1 < len(parts); i++ {
		if strings.EqualFold(parts[i], "resourceGroups") {
			return parts[i+1]
		}
	}
	return ""
}

func nameOf(id string) string { return id[strings.LastIndex(id, "/")+1:] }

func (a *apiClient) instances() ([]instanceRow, error) {
	var list struct{ Value []resource.InstanceJSON }
	if _, err := a.call("GET", fmt.Sprintf("/subscriptions/%s/providers/Microsoft.Sql/managedInstances", url.PathEscape(a.s.sub)), nil, &list); err != nil {
		return nil, err
	}
	rows := make([]instanceRow, 0, len(list.Value))
	for _, m := range list.Value {
		rows = append(rows, instanceRow{InstanceJSON: m, RG: rgOf(m.ID)})
	}
	slices.SortFunc(rows, func(x, y instanceRow) int {
		return strings.Compare(strings.ToLower(x.RG+"/"+x.Location+"/"+x.Name), strings.ToLower(y.RG+"/"+y.Location+"/"+y.Name))
	})
	return rows, nil
}

func (c *Console) instancesPage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rows, err := a.instances()
	groups, _ := a.groups(rows)
	member := map[string]string{}
	for _, g := range groups {
		member[strings.ToLower(g.PrimaryID)], member[strings.ToLower(g.SecondaryID)] = g.Name, g.Name
	}
	for i := range rows {
		rows[i].InGroup = member[strings.ToLower(rows[i].ID)]
	}
	c.render(w, r, http.StatusOK, "instances.html", a, "Managed instances", rows, err)
}

type instanceForm struct {
	Name, RG, Location, AdminLogin, Edition, Storage, VCores, Timezone, Collation, Partner string
	Regions                                                                                []string
	Instances                                                                              []instanceRow
	VCoreChoices                                                                           []int
}

func (c *Console) newInstanceForm(a *apiClient, f instanceForm) instanceForm {
	f.Regions = c.cfg.Regions
	f.Instances, _ = a.instances()
	f.VCoreChoices = []int{4, 8, 16, 24, 32, 40, 64, 80}
	return f
}

func (c *Console) newInstancePage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	f := instanceForm{RG: "rg1", Edition: "GeneralPurpose", Storage: strconv.Itoa(resource.DefaultStorageGB), VCores: strconv.Itoa(resource.DefaultVCores),
		Timezone: resource.DefaultTimezone, Collation: resource.DefaultCollation, AdminLogin: "fogadmin"}
	if len(c.cfg.Regions) > 0 {
		f.Location = c.cfg.Regions[0]
	}
	c.render(w, r, http.StatusOK, "instance_new.html", a, "Create a managed instance", c.newInstanceForm(a, f), nil)
}

func (c *Console) createInstance(w http.ResponseWriter, r *http.Request, a *apiClient) {
	v := r.PostFormValue
	f := instanceForm{Name: strings.TrimSpace(v("name")), RG: strings.TrimSpace(v("resourceGroup")), Location: v("location"), AdminLogin: strings.TrimSpace(v("adminLogin")),
		Edition: v("edition"), Storage: v("storage"), VCores: v("vCores"), Timezone: strings.TrimSpace(v("timezone")), Collation: strings.TrimSpace(v("collation")), Partner: v("dnsZonePartner")}
	fail := func(err error) {
		c.render(w, r, http.StatusBadRequest, "instance_new.html", a, "Create a managed instance", c.newInstanceForm(a, f), err)
	}
	props := map[string]any{"administratorLogin": f.AdminLogin, "administratorLoginPassword": v("password"),
		"timezoneId": f.Timezone, "collation": f.Collation}
	for k, s := range map[string]string{"storageSizeInGB": f.Storage, "vCores": f.VCores} {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fail(&apiError{Code: "InvalidParameterValue", Message: fmt.Sprintf("%s must be a whole number, not '%s'.", k, s)})
			return
		}
		props[k] = n
	}
	if f.Partner != "" {
		props["dnsZonePartner"] = f.Partner
	}
	if f.Name == "" || f.RG == "" {
		fail(&apiError{Code: "InvalidParameterValue", Message: "Enter the instance's name and resource group."})
		return
	}
	body := map[string]any{"location": f.Location, "sku": map[string]any{"tier": f.Edition}, "properties": props}
	p := instancePath(a.s.sub, f.RG, f.Name)
	var existing resource.InstanceJSON
	if _, err := a.call("GET", p, nil, &existing); err == nil {
		fail(&apiError{Code: "ResourceAlreadyExists", Message: fmt.Sprintf("A managed instance '%s' already exists in resource group '%s'. Pick another name (here a create never turns into an update).", f.Name, f.RG)})
		return
	}
	hdr, err := a.call("PUT", p, body, nil)
	if err != nil {
		fail(err)
		return
	}
	redirectToOperation(w, r, hdr, "Creating managed instance "+f.Name, "/console/instances/"+url.PathEscape(f.RG)+"/"+url.PathEscape(f.Name))
}

func instancePath(sub, rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/managedInstances/%s", url.PathEscape(sub), url.PathEscape(rg), url.PathEscape(name))
}

func groupPath(sub, rg, loc, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups/%s", url.PathEscape(sub), url.PathEscape(rg), url.PathEscape(loc), url.PathEscape(name))
}

type database = resource.DatabaseJSON

type instanceDetail struct {
	instanceRow
	Databases []database
	Groups    []groupRow
	Backups   backupsView
	// Recoverable are the databases a geo-restore can recover from the copy of the
	// instance's backups in another region; Recover the recover form's values after a refusal.
	Recoverable []recoverableRow
	Recover     recoverForm
}

func (c *Console) instancePage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	c.renderInstance(w, r, a, http.StatusOK, nil)
}

func (c *Console) renderInstance(w http.ResponseWriter, r *http.Request, a *apiClient, status int, actionErr error) {
	c.renderInstanceWith(w, r, a, status, actionErr, recoverForm{})
}

// renderInstanceWith is renderInstance with the recover form's values as sent.
func (c *Console) renderInstanceWith(w http.ResponseWriter, r *http.Request, a *apiClient, status int, actionErr error, rec recoverForm) {
	rg, name := r.PathValue("rg"), r.PathValue("name")
	d := instanceDetail{Recover: rec}
	if _, err := a.call("GET", instancePath(a.s.sub, rg, name), nil, &d.InstanceJSON); err != nil {
		c.render(w, r, statusOf(err), "instance.html", a, name, nil, err)
		return
	}
	d.RG = rg
	var dbs struct{ Value []database }
	_, err := a.call("GET", instancePath(a.s.sub, rg, name)+"/databases", nil, &dbs)
	d.Databases = dbs.Value
	all, _ := a.instances()
	groups, _ := a.groups(all)
	for _, g := range groups {
		if strings.EqualFold(g.PrimaryID, d.ID) || strings.EqualFold(g.SecondaryID, d.ID) {
			d.Groups = append(d.Groups, g)
		}
	}
	d.Backups = a.backupsView(&d)
	d.Recoverable = a.recoverableView(&d, all)
	if actionErr != nil {
		err = actionErr
	}
	c.render(w, r, status, "instance.html", a, name, d, err)
}

func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != 0 {
		return ae.Status
	}
	return http.StatusInternalServerError
}

func (c *Console) deleteInstance(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, name := r.PathValue("rg"), r.PathValue("name")
	if r.PostFormValue("confirm") != name {
		c.renderInstance(w, r, a, http.StatusBadRequest, &apiError{Code: "ConfirmationMismatch", Message: fmt.Sprintf("Type the instance's name, %s, to delete it.", name)})
		return
	}
	hdr, err := a.call("DELETE", instancePath(a.s.sub, rg, name), nil, nil)
	if err != nil {
		c.renderInstance(w, r, a, statusOf(err), err)
		return
	}
	redirectToOperation(w, r, hdr, "Deleting managed instance "+name, "/console/instances")
}

func (c *Console) createDatabase(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, name := r.PathValue("rg"), r.PathValue("name")
	db := strings.TrimSpace(r.PostFormValue("database"))
	hdr, err := a.call("PUT", instancePath(a.s.sub, rg, name)+"/databases/"+url.PathEscape(db), map[string]any{"location": r.PostFormValue("location"), "properties": map[string]any{}}, nil)
	if err != nil {
		c.renderInstance(w, r, a, statusOf(err), err)
		return
	}
	redirectToOperation(w, r, hdr, "Creating database "+db, "/console/instances/"+url.PathEscape(rg)+"/"+url.PathEscape(name))
}

// ---- failover groups ----

type groupRow struct {
	resource.FailoverGroupJSON
	RG, Location             string // the side it was read from
	PrimaryID, SecondaryID   string
	Primary, Secondary       string
	PrimaryLoc, SecondaryLoc string
	PrimaryRG, SecondaryRG   string
}

// groups lists every group once, as its primary's side reports it.
func (a *apiClient) groups(instances []instanceRow) ([]groupRow, error) {
	loc := map[string]string{}
	sides := map[[2]string]bool{}
	for _, m := range instances {
		loc[strings.ToLower(m.ID)] = m.Location
		sides[[2]string{m.RG, m.Location}] = true
	}
	seen := map[string]bool{}
	var out []groupRow
	var firstErr error
	for side := range sides {
		var list struct{ Value []resource.FailoverGroupJSON }
		p := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/locations/%s/instanceFailoverGroups", url.PathEscape(a.s.sub), url.PathEscape(side[0]), url.PathEscape(side[1]))
		if _, err := a.call("GET", p, nil, &list); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, g := range list.Value {
			row := groupRow{FailoverGroupJSON: g, RG: side[0], Location: side[1]}
			if len(g.Properties.ManagedInstancePairs) > 0 {
				pair := g.Properties.ManagedInstancePairs[0]
				row.PrimaryID, row.SecondaryID = pair.PrimaryManagedInstanceID, pair.PartnerManagedInstanceID
			}
			row.Primary, row.Secondary = nameOf(row.PrimaryID), nameOf(row.SecondaryID)
			row.PrimaryRG, row.SecondaryRG = rgOf(row.PrimaryID), rgOf(row.SecondaryID)
			row.PrimaryLoc, row.SecondaryLoc = loc[strings.ToLower(row.PrimaryID)], loc[strings.ToLower(row.SecondaryID)]
			key := strings.ToLower(row.PrimaryID + "|" + g.Name)
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, row)
		}
	}
	slices.SortFunc(out, func(x, y groupRow) int { return strings.Compare(x.Name, y.Name) })
	return out, firstErr
}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	insts, err := a.instances()
	var groups []groupRow
	if err == nil {
		groups, err = a.groups(insts)
	}
	c.render(w, r, http.StatusOK, "groups.html", a, "Failover groups", groups, err)
}

type candidate struct {
	instanceRow
	Reason string
}

type groupForm struct {
	Name, Policy, Grace, SecondaryType string
	Primary                            *instanceRow
	Primaries                          []instanceRow
	Eligible, Ineligible               []candidate
	Partner                            string
}

// eligibility says why cand cannot be prim's secondary ("" when it can): the prerequisites
// the API checks, so the picker offers only instances the create can succeed with.
func (a *apiClient) eligibility(prim, cand instanceRow, grouped map[string]bool) string {
	pp, cp := prim.Properties, cand.Properties
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	tier := func(m instanceRow) string {
		if m.Sku == nil {
			return ""
		}
		return m.Sku.Tier
	}
	num := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	switch {
	case strings.EqualFold(cand.Location, prim.Location):
		return "in the same region as the primary (a group needs two regions)"
	case grouped[strings.ToLower(cand.ID)]:
		return "already in a failover group"
	case cp.ProvisioningState != resource.ProvisioningSucceeded || cp.State != "Ready":
		return "not Ready (" + cp.State + ")"
	case str(cp.DNSZone) != str(pp.DNSZone):
		return "not in the primary's DNS zone: create it with the primary as DNS zone partner"
	case tier(cand) != tier(prim):
		return "another service tier (" + tier(cand) + ")"
	case num(cp.StorageSizeInGB) != num(pp.StorageSizeInGB):
		return fmt.Sprintf("another storage size (%d GB, the primary has %d GB)", num(cp.StorageSizeInGB), num(pp.StorageSizeInGB))
	case str(cp.Collation) != str(pp.Collation):
		return "another collation (" + str(cp.Collation) + ")"
	case str(cp.TimezoneID) != str(pp.TimezoneID):
		return "another time zone (" + str(cp.TimezoneID) + ")"
	case str(cp.DatabaseFormat) != str(pp.DatabaseFormat):
		return "another database format"
	}
	var dbs struct{ Value []database }
	if _, err := a.call("GET", instancePath(a.s.sub, cand.RG, cand.Name)+"/databases", nil, &dbs); err == nil && len(dbs.Value) > 0 {
		return "has user databases (a secondary must be empty)"
	}
	return ""
}

func (c *Console) groupForm(a *apiClient, f groupForm, rg, mi string) groupForm {
	insts, _ := a.instances()
	groups, _ := a.groups(insts)
	grouped := map[string]bool{}
	for _, g := range groups {
		grouped[strings.ToLower(g.PrimaryID)], grouped[strings.ToLower(g.SecondaryID)] = true, true
	}
	for i, m := range insts {
		if !grouped[strings.ToLower(m.ID)] {
			f.Primaries = append(f.Primaries, m)
		}
		if strings.EqualFold(m.RG, rg) && strings.EqualFold(m.Name, mi) {
			f.Primary = &insts[i]
		}
	}
	if f.Primary == nil {
		return f
	}
	for _, m := range insts {
		if m.ID == f.Primary.ID {
			continue
		}
		if why := a.eligibility(*f.Primary, m, grouped); why != "" {
			f.Ineligible = append(f.Ineligible, candidate{m, why})
		} else {
			f.Eligible = append(f.Eligible, candidate{instanceRow: m})
		}
	}
	return f
}

func (c *Console) newGroupPage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	q := r.URL.Query()
	rg, mi := q.Get("rg"), q.Get("mi")
	if pick := q.Get("pick"); pick != "" {
		rg, mi, _ = strings.Cut(pick, "/")
	}
	f := c.groupForm(a, groupForm{Policy: "Manual", Grace: "1", SecondaryType: "Geo"}, rg, mi)
	c.render(w, r, http.StatusOK, "group_new.html", a, "Add a failover group", f, nil)
}

func (c *Console) createGroup(w http.ResponseWriter, r *http.Request, a *apiClient) {
	v := r.PostFormValue
	rg, mi := v("primaryResourceGroup"), v("primary")
	f := groupForm{Name: strings.TrimSpace(v("name")), Policy: v("failoverPolicy"), Grace: v("gracePeriod"), SecondaryType: v("secondaryType"), Partner: v("partner")}
	f = c.groupForm(a, f, rg, mi)
	fail := func(err error) {
		c.render(w, r, statusOf(err), "group_new.html", a, "Add a failover group", f, err)
	}
	if f.Primary == nil {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InstanceFailoverGroupCreateOrUpdateRequestInvalidPrimary", Message: "Pick the primary managed instance."})
		return
	}
	var partner *instanceRow
	for _, m := range append(append([]candidate{}, f.Eligible...), f.Ineligible...) {
		if strings.EqualFold(m.ID, f.Partner) {
			partner = &m.instanceRow
		}
	}
	if partner == nil {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InstanceFailoverGroupCreateOrUpdateRequestInvalidPartner", Message: "Pick the secondary managed instance."})
		return
	}
	rw := map[string]any{"failoverPolicy": f.Policy}
	if f.Policy == "Automatic" {
		h, err := strconv.Atoi(f.Grace)
		if err != nil {
			fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidFailoverWithDataLossGracePeriod", Message: "The grace period is a whole number of hours (at least 1)."})
			return
		}
		rw["failoverWithDataLossGracePeriodMinutes"] = h * 60
	}
	props := map[string]any{
		"readWriteEndpoint":    rw,
		"readOnlyEndpoint":     map[string]any{"failoverPolicy": "Disabled"},
		"partnerRegions":       []any{map[string]any{"location": partner.Location}},
		"managedInstancePairs": []any{map[string]any{"primaryManagedInstanceId": f.Primary.ID, "partnerManagedInstanceId": partner.ID}},
		"secondaryType":        f.SecondaryType,
	}
	p := groupPath(a.s.sub, f.Primary.RG, f.Primary.Location, f.Name)
	hdr, err := a.call("PUT", p, map[string]any{"properties": props}, nil)
	if err != nil {
		fail(err)
		return
	}
	redirectToOperation(w, r, hdr, "Creating failover group "+f.Name+" (seeding "+partner.Name+")",
		"/console/groups/"+url.PathEscape(f.Primary.RG)+"/"+url.PathEscape(f.Primary.Location)+"/"+url.PathEscape(f.Name))
}

// side is one instance of a group as its own side reports the group.
type side struct {
	Instance, RG, Location string
	Role, State            string
	Listeners              *resource.Listeners
	Replication            *resource.ReplicationStatus
	Err                    *apiError
}

type groupDetail struct {
	Name, RG, Location string
	Group              resource.FailoverGroupJSON
	Sides              []side
	Primary, Secondary *side
	Events             []resource.Event
}

func (a *apiClient) groupDetail(rg, loc, name string) (*groupDetail, error) {
	var g resource.FailoverGroupJSON
	if _, err := a.call("GET", groupPath(a.s.sub, rg, loc, name), nil, &g); err != nil {
		return nil, err
	}
	d := &groupDetail{Name: name, RG: rg, Location: loc, Group: g}
	if len(g.Properties.ManagedInstancePairs) == 0 {
		return d, nil
	}
	insts, _ := a.instances()
	locOf := map[string]string{}
	for _, m := range insts {
		locOf[strings.ToLower(m.ID)] = m.Location
	}
	pair := g.Properties.ManagedInstancePairs[0]
	for _, id := range []string{pair.PrimaryManagedInstanceID, pair.PartnerManagedInstanceID} {
		s := side{Instance: nameOf(id), RG: rgOf(id), Location: locOf[strings.ToLower(id)]}
		var sg resource.FailoverGroupJSON
		if _, err := a.call("GET", groupPath(a.s.sub, s.RG, s.Location, name), nil, &sg); err != nil {
			var ae *apiError
			errors.As(err, &ae)
			s.Err = ae
		} else {
			s.Role, s.State, s.Listeners, s.Replication = sg.Properties.ReplicationRole, sg.Properties.ReplicationState, sg.Properties.Listeners, sg.Properties.Replication
			if len(sg.Properties.Events) > len(d.Events) {
				d.Events = sg.Properties.Events
			}
			if sg.Properties.LastForcedFailover != nil {
				d.Group.Properties.LastForcedFailover = sg.Properties.LastForcedFailover
			}
		}
		d.Sides = append(d.Sides, s)
	}
	for i := range d.Sides {
		switch d.Sides[i].Role {
		case "Primary":
			d.Primary = &d.Sides[i]
		case "Secondary":
			d.Secondary = &d.Sides[i]
		}
	}
	// Newest first, the last 20.
	ev := slices.Clone(d.Events)
	slices.Reverse(ev)
	if len(ev) > 20 {
		ev = ev[:20]
	}
	d.Events = ev
	return d, nil
}

func (c *Console) groupPage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	d, err := a.groupDetail(r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"))
	status := http.StatusOK
	if err != nil {
		status = statusOf(err)
	}
	c.render(w, r, status, "group.html", a, "Failover group "+r.PathValue("name"), d, err)
}

// groupLive is the group page's live part, polled by htmx.
func (c *Console) groupLive(w http.ResponseWriter, r *http.Request, a *apiClient) {
	d, err := a.groupDetail(r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"))
	if err != nil {
		http.Error(w, errorText(err), statusOf(err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if xerr := c.tmpl["group.html"].ExecuteTemplate(w, "live", page{Data: d, CSRF: a.s.csrf}); xerr != nil {
		c.cfg.Log.Error("console: render", "template", "live", "err", xerr)
	}
}

func (c *Console) groupAction(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, loc, name, action := r.PathValue("rg"), r.PathValue("loc"), r.PathValue("name"), r.PathValue("action")
	d, err := a.groupDetail(rg, loc, name)
	fail := func(err error) {
		c.render(w, r, statusOf(err), "group.html", a, "Failover group "+name, d, err)
	}
	if err != nil {
		fail(err)
		return
	}
	here := "/console/groups/" + url.PathEscape(rg) + "/" + url.PathEscape(loc) + "/" + url.PathEscape(name)
	var target *side
	var method, suffix, what string
	switch action {
	case "failover", "force":
		// A failover is asked of the secondary's side, as Azure's.
		target, method, suffix, what = d.Secondary, "POST", "/failover", "Planned failover of "+name
		if action == "force" {
			suffix, what = "/forceFailoverAllowDataLoss", "Forced failover of "+name
			if r.PostFormValue("confirm") != name {
				fail(&apiError{Status: http.StatusBadRequest, Code: "ConfirmationMismatch", Message: fmt.Sprintf("A forced failover can lose the transactions the secondary has not received. Type the group's name, %s, to confirm.", name)})
				return
			}
		}
		if target == nil {
			fail(&apiError{Status: http.StatusConflict, Code: "NoSecondary", Message: "Neither side reports itself as the secondary right now; wait for the group's state and try again."})
			return
		}
	case "delete":
		target, method, suffix, what = d.Primary, "DELETE", "", "Deleting failover group "+name
		if r.PostFormValue("confirm") != name {
			fail(&apiError{Status: http.StatusBadRequest, Code: "ConfirmationMismatch", Message: fmt.Sprintf("Type the group's name, %s, to delete it.", name)})
			return
		}
		if target == nil {
			fail(&apiError{Status: http.StatusConflict, Code: "NoPrimary", Message: "Neither side reports itself as the primary right now; a group is deleted on its primary's side."})
			return
		}
		here = "/console/groups"
	default:
		http.NotFound(w, r)
		return
	}
	hdr, err := a.call(method, groupPath(a.s.sub, target.RG, target.Location, name)+suffix, nil, nil)
	if err != nil {
		fail(err)
		return
	}
	if action != "delete" {
		here = "/console/groups/" + url.PathEscape(target.RG) + "/" + url.PathEscape(target.Location) + "/" + url.PathEscape(name)
	}
	redirectToOperation(w, r, hdr, what, here)
}

// ---- long-running operations ----

// redirectToOperation sends the browser to the page that follows the operation.
func redirectToOperation(w http.ResponseWriter, r *http.Request, hdr http.Header, what, next string) {
	op := hdr.Get("Azure-AsyncOperation")
	if op == "" { // done at once (a 200/201)
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	q := url.Values{"u": {pathOf(op)}, "next": {next}, "what": {what}}
	http.Redirect(w, r, "/console/operation?"+q.Encode(), http.StatusSeeOther)
}

type opView struct {
	What, Next, U string
	// Poll is the status fragment's URL.
	Poll     string
	Status   arm.OperationStatus
	Done, OK bool
	Percent  string
}

func (a *apiClient) operation(r *http.Request) (opView, error) {
	q := r.URL.Query()
	v := opView{What: q.Get("what"), Next: safeNext(q.Get("next")), U: q.Get("u")}
	v.Poll = "/console/operation/status?" + url.Values{"u": {v.U}, "next": {v.Next}, "what": {v.What}}.Encode()
	if !strings.HasPrefix(v.U, "/subscriptions/") || !strings.Contains(v.U, "AzureAsyncOperation/") {
		return v, &apiError{Status: http.StatusBadRequest, Code: "InvalidOperation", Message: "Not an operation of this API."}
	}
	_, err := a.call("GET", v.U, nil, &v.Status)
	v.Done = arm.Terminal(v.Status.Status)
	v.OK = v.Status.Status == arm.StatusSucceeded
	if v.Status.PercentComplete != nil {
		v.Percent = fmt.Sprintf("%.0f", *v.Status.PercentComplete)
	}
	return v, err
}

func (c *Console) operationPage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	v, err := a.operation(r)
	c.render(w, r, http.StatusOK, "operation.html", a, v.What, v, err)
}

func (c *Console) operationStatus(w http.ResponseWriter, r *http.Request, a *apiClient) {
	v, err := a.operation(r)
	if err != nil {
		http.Error(w, errorText(err), statusOf(err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if xerr := c.tmpl["operation.html"].ExecuteTemplate(w, "status", v); xerr != nil {
		c.cfg.Log.Error("console: render", "template", "status", "err", xerr)
	}
}
