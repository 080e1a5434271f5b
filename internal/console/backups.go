package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/resource"
)

// The backup half of the console: an instance's backups and dropped databases, a database's
// restore window and retention, and the forms that restore (a point in time, a dropped
// database) and set the retention. Each form sends the request the CLI's command sends
// (fog sql midb restore, short-term-retention-policy set), through the same client.

// backupActivity is the activity log's action of an automated backup (Fog's own: Azure logs
// none).
const backupActivity = "Microsoft.Sql/managedInstances/backups/action"

// backupEvent is one backup's end in the activity log.
type backupEvent struct {
	At          time.Time
	Status      string // Succeeded, Failed
	Type        string
	Size        int64
	Duration    time.Duration
	Description string
}

// backupHistory is how far back the instance page looks for backups in the activity log.
const backupHistory = 35 * 24 * time.Hour

// recentBackups reads instance id's last backups from the activity log, newest first: what
// the API says of a backup's outcome and of the verification that follows it.
func (a *apiClient) recentBackups(id string, n int) ([]backupEvent, error) {
	f := fmt.Sprintf("eventTimestamp ge '%s' and resourceId eq '%s'", time.Now().Add(-backupHistory).UTC().Format(time.RFC3339), id)
	evs, err := a.c.ListActivityLog(a.ctx, f)
	if err != nil {
		return nil, apiErr(err)
	}
	var out []backupEvent
	for _, e := range evs {
		if e.OperationName.Value != backupActivity || e.Status.Value == "Started" {
			continue
		}
		b := backupEvent{At: e.EventTimestamp, Status: e.Status.Value}
		if d, ok := e.Properties["description"].(string); ok {
			b.Description = d
		}
		if m, ok := e.Properties["statusMessage"].(string); ok && b.Description == "" {
			b.Description = m
		}
		if ms, ok := e.Properties["durationMs"].(float64); ok {
			b.Duration = time.Duration(ms) * time.Millisecond
		}
		if bk, ok := e.Properties["backup"].(map[string]any); ok {
			b.Type = backupTypeName(fmt.Sprint(bk["type"]))
			if s, ok := bk["size"].(float64); ok {
				b.Size = int64(s)
			}
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(x, y backupEvent) int { return y.At.Compare(x.At) })
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// backupTypeName is the activity log's backup type (pgBackRest's) as the API names types.
func backupTypeName(t string) string {
	switch t {
	case "full":
		return resource.BackupTypeFull
	case "diff":
		return resource.BackupTypeDifferential
	case "incr":
		return resource.BackupTypeIncremental
	case "<nil>":
		return ""
	}
	return t
}

// apiErr gives an API error without a code (a bare status) its status text as the code.
func apiErr(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == "" {
		ae.Code = http.StatusText(ae.Status)
	}
	return err
}

// backupsView is the instance page's backups card.
type backupsView struct {
	Redundancy string
	// Last is the instance's last backup, as its databases' GETs show it (nil: none yet, or
	// no database to show it).
	Last *resource.DatabaseProperties
	// Recent are the last backups' outcomes from the activity log; RecentErr why they could
	// not be read.
	Recent    []backupEvent
	RecentErr string
	// Dropped are the databases dropped from the instance that its backups can restore.
	Dropped    []resource.RestorableDroppedDatabaseJSON
	DroppedErr string
}

func (a *apiClient) backupsView(d *instanceDetail) backupsView {
	var v backupsView
	if p := d.Properties.BackupStorageRedundancy; p != nil {
		v.Redundancy = *p
	}
	for i := range d.Databases {
		if p := &d.Databases[i].Properties; p.LastBackupTime != nil && (v.Last == nil || p.LastBackupTime.After(*v.Last.LastBackupTime)) {
			v.Last = p
		}
	}
	var err error
	if v.Recent, err = a.recentBackups(d.ID, 5); err != nil {
		v.RecentErr = errorText(err)
	}
	dropped, err := a.c.ListRestorableDroppedDatabases(a.ctx, d.RG, d.Name)
	if err != nil {
		v.DroppedErr = errorText(apiErr(err))
	}
	slices.SortFunc(dropped, func(x, y resource.RestorableDroppedDatabaseJSON) int {
		return y.Properties.DeletionDate.Compare(x.Properties.DeletionDate)
	})
	v.Dropped = dropped
	return v
}

// ---- a database ----

// restoreForm is the point-in-time restore form's values.
type restoreForm struct {
	Name, Time string
	// Target is the instance to restore into, "<resource group>/<name>".
	Target string
}

// databaseForms are the database page's forms' values after a refused change (zero: the
// page as read).
type databaseForms struct {
	Restore restoreForm
	Days    string // the retention form's value
	// LTRPolicy is the LTR policy form's values (nil: the policy's).
	LTRPolicy  *ltrForm
	LTRRestore ltrRestoreForm
}

type databaseDetail struct {
	RG, Instance, Location string
	DB                     resource.DatabaseJSON
	// RetentionDays is the short-term retention policy's (0: not read, RetentionErr says why).
	RetentionDays int
	RetentionErr  string
	// Targets are the instances a restore may go into: the source's region's.
	Targets []instanceRow
	LTR     ltrView
	databaseForms
	// LTRForm is what the LTR policy form shows: the values sent, or the policy's.
	LTRForm ltrForm
	Now     time.Time
}

func databasePagePath(rg, mi, db string) string {
	return "/console/instances/" + url.PathEscape(rg) + "/" + url.PathEscape(mi) + "/databases/" + url.PathEscape(db)
}

func instancePagePath(rg, mi string) string {
	return "/console/instances/" + url.PathEscape(rg) + "/" + url.PathEscape(mi)
}

func (c *Console) databasePage(w http.ResponseWriter, r *http.Request, a *apiClient) {
	c.renderDatabase(w, r, a, http.StatusOK, nil, databaseForms{})
}

// renderDatabase shows a database's page; after a refused change, with the change's error
// and the form's values as sent.
func (c *Console) renderDatabase(w http.ResponseWriter, r *http.Request, a *apiClient, status int, actionErr error, f databaseForms) {
	rg, mi, db := r.PathValue("rg"), r.PathValue("name"), r.PathValue("db")
	title := "Database " + db + " of " + mi
	d := databaseDetail{RG: rg, Instance: mi, databaseForms: f, Now: time.Now().UTC()}
	var inst resource.InstanceJSON
	if _, err := a.call("GET", instancePath(a.s.sub, rg, mi), nil, &inst); err != nil {
		c.render(w, r, statusOf(err), "database.html", a, title, nil, err)
		return
	}
	d.Location = inst.Location
	if _, err := a.call("GET", instancePath(a.s.sub, rg, mi)+"/databases/"+url.PathEscape(db), nil, &d.DB); err != nil {
		c.render(w, r, statusOf(err), "database.html", a, title, nil, err)
		return
	}
	if p, err := a.c.GetShortTermRetentionPolicy(a.ctx, rg, mi, db); err != nil {
		d.RetentionErr = errorText(apiErr(err))
	} else if p.Properties.RetentionDays != nil {
		d.RetentionDays = *p.Properties.RetentionDays
	}
	d.LTR = a.ltrView(rg, inst.Location, mi, db)
	switch {
	case f.LTRPolicy != nil:
		d.LTRForm = *f.LTRPolicy
	case d.LTR.Policy != nil:
		p := d.LTR.Policy
		d.LTRForm = ltrForm{Weekly: p.WeeklyRetention, Monthly: p.MonthlyRetention, Yearly: p.YearlyRetention}
		if p.WeekOfYear != 0 {
			d.LTRForm.Week = strconv.Itoa(p.WeekOfYear)
		}
	}
	all, _ := a.instances()
	for _, m := range all {
		if strings.EqualFold(m.Location, inst.Location) {
			d.Targets = append(d.Targets, m)
		}
	}
	if d.Restore.Target == "" {
		d.Restore.Target = rg + "/" + mi
	}
	if d.LTRRestore.Target == "" {
		d.LTRRestore.Target = rg + "/" + mi
	}
	c.render(w, r, status, "database.html", a, title, d, actionErr)
}

// restoreTimeLayouts are the forms of a point in time the restore forms take: az's (ISO
// 8601, UTC unless a zone is named, as fog sql midb restore --time) and the console's own
// display ("2006-01-02 15:04:05 UTC"), so that a time shown on a page can be pasted.
var restoreTimeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04:05.999999999 UTC", "2006-01-02T15:04"}

func parseRestoreTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range restoreTimeLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	if s == "" {
		return time.Time{}, &apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters", Message: "Enter the point in time to restore to, in UTC, such as 2026-12-03T14:05:00."}
	}
	return time.Time{}, &apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters",
		Message: fmt.Sprintf("'%s' is not a point in time: give yyyy-mm-ddThh:mm:ss (UTC) or RFC 3339 with a zone.", s)}
}

// restoreDatabase restores the page's database to a point in time as a new database:
// fog sql midb restore's request (a database PUT with createMode PointInTimeRestore).
func (c *Console) restoreDatabase(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi, db := r.PathValue("rg"), r.PathValue("name"), r.PathValue("db")
	f := restoreForm{Name: strings.TrimSpace(r.PostFormValue("name")), Time: strings.TrimSpace(r.PostFormValue("time")), Target: r.PostFormValue("target")}
	fail := func(err error) { c.renderDatabase(w, r, a, statusOf(err), err, databaseForms{Restore: f}) }
	destRG, destMI, ok := strings.Cut(f.Target, "/")
	if !ok || destRG == "" || destMI == "" {
		destRG, destMI = rg, mi
	}
	if f.Name == "" {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters", Message: "Enter the name of the new database the restore creates."})
		return
	}
	at, err := parseRestoreTime(f.Time)
	if err != nil {
		fail(err)
		return
	}
	op, err := a.c.BeginRestoreDatabase(a.ctx, rg, mi, db, at, destRG, destMI, f.Name)
	if err != nil {
		fail(apiErr(err))
		return
	}
	redirectToOperation(w, r, op.First.Header, fmt.Sprintf("Restoring %s as %s (as it was at %s)", db, f.Name, at.Format("2006-01-02 15:04:05.999999 UTC")),
		instancePagePath(destRG, destMI))
}

// jsonNumber is what the retention form passes on as a number: the API judges the value
// (InvalidBackupRetentionPeriod, with the range), as az leaves it to Azure.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// setRetention sets the page's database's short-term retention: fog sql midb
// short-term-retention-policy set's request.
func (c *Console) setRetention(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi, db := r.PathValue("rg"), r.PathValue("name"), r.PathValue("db")
	days := strings.TrimSpace(r.PostFormValue("retentionDays"))
	if !jsonNumber.MatchString(days) {
		err := &apiError{Status: http.StatusBadRequest, Code: "InvalidBackupRetentionPeriod",
			Message: fmt.Sprintf("'%s' is not a number of days: give a whole number between %d and %d.", days, resource.MinRetentionDays, resource.MaxRetentionDays)}
		c.renderDatabase(w, r, a, http.StatusBadRequest, err, databaseForms{Days: days})
		return
	}
	var op *fogclient.Operation
	var err error
	if n, aerr := strconv.Atoi(days); aerr == nil {
		op, err = a.c.BeginSetShortTermRetentionPolicy(a.ctx, rg, mi, db, n)
	} else { // 2.5, 1e3: the API's words for a value that is no whole number
		p := a.c.ShortTermRetentionPath(rg, mi, db, resource.ShortTermRetentionPolicyName)
		op, err = a.c.Begin(a.ctx, http.MethodPut, p, map[string]any{"properties": map[string]any{"retentionDays": json.Number(days)}}, p)
	}
	if err != nil {
		c.renderDatabase(w, r, a, statusOf(apiErr(err)), err, databaseForms{Days: days})
		return
	}
	redirectToOperation(w, r, op.First.Header, fmt.Sprintf("Setting %s's point-in-time restore window to %s days", db, days), databasePagePath(rg, mi, db))
}

// restoreDropped restores a database dropped from the page's instance as a new database of
// that instance: fog sql midb restore --deleted-time's request (createMode
// PointInTimeRestore with restorableDroppedDatabaseId), as it was when dropped unless a time
// is given.
func (c *Console) restoreDropped(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi := r.PathValue("rg"), r.PathValue("name")
	dropped := r.PostFormValue("dropped")
	name := strings.TrimSpace(r.PostFormValue("name"))
	when := strings.TrimSpace(r.PostFormValue("time"))
	fail := func(err error) { c.renderInstance(w, r, a, statusOf(err), err) }
	source, _, err := arm.ParseRestorableDroppedDatabaseName(dropped)
	if err != nil {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRestorableDroppedDatabaseId", Message: "Pick a dropped database from the list."})
		return
	}
	if name == "" {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters", Message: fmt.Sprintf("Enter the name of the new database the restore of %s creates.", source)})
		return
	}
	var db fogclient.Database
	db.Properties.CreateMode = resource.CreateModePointInTimeRestore
	db.Properties.RestorableDroppedDatabaseID = a.c.RestorableDroppedDatabasePath(rg, mi, dropped)
	what := fmt.Sprintf("Restoring dropped database %s as %s", source, name)
	if when != "" {
		at, err := parseRestoreTime(when)
		if err != nil {
			fail(err)
			return
		}
		db.Properties.RestorePointInTime = &at
		what += " (as it was at " + at.Format("2006-01-02 15:04:05.999999 UTC") + ")"
	}
	p := a.c.DatabasePath(rg, mi, name)
	op, err := a.c.Begin(a.ctx, http.MethodPut, p, db, p)
	if err != nil {
		fail(apiErr(err))
		return
	}
	redirectToOperation(w, r, op.First.Header, what, instancePagePath(rg, mi))
}

// bytesText is a size for people: 1.5 GiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
