package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/resource"
)

// Geo-restore and long-term retention in the console: an instance's recoverable databases
// with a form that recovers one (fog sql midb recover), and a database's LTR policy and LTR
// backups with the forms that set the policy (ltr-policy set), restore a backup
// (ltr-backup restore) and delete one (ltr-backup delete). Each sends the CLI's request
// through the same client; the API judges the values.

// ---- geo-restore, on an instance's page ----

// recoverForm is the recover form's values after a refusal.
type recoverForm struct {
	// DB is the recoverable database's name (as listed), Name the new database's, Target the
	// instance to recover into, "<resource group>/<name>".
	DB, Name, Target string
}

// recoverableRow is a recoverable database with the instances it can be recovered into:
// those of the region that holds the copy of the backups.
type recoverableRow struct {
	resource.RecoverableDatabaseJSON
	Targets []instanceRow
}

// recoverableView lists the instance's databases a geo-restore can recover. An instance
// without a copy of its backups in another region has none (the API refuses the list of a
// Local or Zone one, MiGeoRestoreWithWrongBackupStorageRedundancy): the page then shows no
// geo-restore at all.
func (a *apiClient) recoverableView(d *instanceDetail, all []instanceRow) []recoverableRow {
	recs, err := a.c.ListRecoverableDatabases(a.ctx, d.RG, d.Name)
	if err != nil {
		return nil
	}
	out := make([]recoverableRow, 0, len(recs))
	for _, rec := range recs {
		row := recoverableRow{RecoverableDatabaseJSON: rec}
		for _, m := range all {
			if strings.EqualFold(m.Location, rec.Properties.GeoBackupRegion) {
				row.Targets = append(row.Targets, m)
			}
		}
		out = append(out, row)
	}
	slices.SortFunc(out, func(x, y recoverableRow) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// recoverDatabase geo-restores one of the page's instance's recoverable databases as a new
// database of an instance of the region that holds the copy: fog sql midb recover's request
// (a database PUT with createMode Recovery and recoverableDatabaseId).
func (c *Console) recoverDatabase(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi := r.PathValue("rg"), r.PathValue("name")
	f := recoverForm{DB: r.PostFormValue("recoverable"), Name: strings.TrimSpace(r.PostFormValue("name")), Target: r.PostFormValue("target")}
	fail := func(err error) { c.renderInstanceWith(w, r, a, statusOf(err), err, f) }
	if f.DB == "" || strings.ContainsAny(f.DB, "/?#") {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRecoverableDatabaseId", Message: "Pick a database to recover from the list."})
		return
	}
	destRG, destMI, ok := strings.Cut(f.Target, "/")
	if !ok || destRG == "" || destMI == "" {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters", Message: fmt.Sprintf("Pick the managed instance to recover %s into: one of the region that holds the copy of the backups.", f.DB)})
		return
	}
	if f.Name == "" {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters", Message: fmt.Sprintf("Enter the name of the new database the recovery of %s creates.", f.DB)})
		return
	}
	op, err := a.c.BeginRecoverDatabase(a.ctx, a.c.RecoverableDatabasePath(rg, mi, f.DB), destRG, destMI, f.Name)
	if err != nil {
		fail(apiErr(err))
		return
	}
	redirectToOperation(w, r, op.First.Header, fmt.Sprintf("Recovering %s of %s as %s of %s (geo-restore)", f.DB, mi, f.Name, destMI), instancePagePath(destRG, destMI))
}

// ---- long-term retention, on a database's page ----

// ltrForm is the LTR policy form's values after a refused change.
type ltrForm struct {
	Weekly, Monthly, Yearly, Week string
}

// ltrRestoreForm is an LTR backup's restore form's values after a refusal.
type ltrRestoreForm struct {
	Backup, Name, Target string
}

// ltrView is the database page's long-term retention card.
type ltrView struct {
	Policy    *resource.LongTermRetentionProperties
	PolicyErr string
	Backups   []fogclient.LongTermRetentionBackup
	BackupErr string
}

func (a *apiClient) ltrView(rg, location, mi, db string) ltrView {
	var v ltrView
	if p, err := a.c.GetLongTermRetentionPolicy(a.ctx, rg, mi, db); err != nil {
		v.PolicyErr = errorText(apiErr(err))
	} else {
		v.Policy = &p.Properties
	}
	bs, err := a.c.ListLongTermRetentionBackups(a.ctx, rg, location, mi, db)
	if err != nil {
		v.BackupErr = errorText(apiErr(err))
	}
	slices.SortFunc(bs, func(x, y fogclient.LongTermRetentionBackup) int {
		return y.Properties.BackupTime.Compare(x.Properties.BackupTime)
	})
	v.Backups = bs
	return v
}

// ltrRetention is a retention as the policy form sends it: as typed, in capitals (as the
// CLI), PT0S (none) when left empty.
func ltrRetention(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "" {
		return "PT0S"
	}
	return s
}

// setLTRPolicy sets the page's database's LTR policy: fog sql midb ltr-policy set's request,
// with the form's four values (the form shows the current ones).
func (c *Console) setLTRPolicy(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi, db := r.PathValue("rg"), r.PathValue("name"), r.PathValue("db")
	f := ltrForm{Weekly: r.PostFormValue("weeklyRetention"), Monthly: r.PostFormValue("monthlyRetention"), Yearly: r.PostFormValue("yearlyRetention"),
		Week: strings.TrimSpace(r.PostFormValue("weekOfYear"))}
	fail := func(err error) { c.renderDatabase(w, r, a, statusOf(err), err, databaseForms{LTRPolicy: &f}) }
	p := resource.LongTermRetentionProperties{WeeklyRetention: ltrRetention(f.Weekly), MonthlyRetention: ltrRetention(f.Monthly), YearlyRetention: ltrRetention(f.Yearly)}
	var op *fogclient.Operation
	var err error
	switch n, aerr := strconv.Atoi(f.Week); {
	case f.Week == "":
		op, err = a.c.BeginSetLongTermRetentionPolicy(a.ctx, rg, mi, db, p)
	case aerr == nil:
		p.WeekOfYear = n
		op, err = a.c.BeginSetLongTermRetentionPolicy(a.ctx, rg, mi, db, p)
	case jsonNumber.MatchString(f.Week): // 2.5: the API's words for a week that is no whole number
		path := a.c.LongTermRetentionPolicyPath(rg, mi, db, resource.LongTermRetentionPolicyName)
		op, err = a.c.Begin(a.ctx, http.MethodPut, path, map[string]any{"properties": map[string]any{
			"weeklyRetention": p.WeeklyRetention, "monthlyRetention": p.MonthlyRetention, "yearlyRetention": p.YearlyRetention, "weekOfYear": json.Number(f.Week)}}, path)
	default:
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidParameterValue",
			Message: fmt.Sprintf("'%s' is not a week of the year: give the week (1 to 52) whose full backup the yearly retention keeps.", f.Week)})
		return
	}
	if err != nil {
		fail(apiErr(err))
		return
	}
	redirectToOperation(w, r, op.First.Header, fmt.Sprintf("Setting %s's long-term retention", db), databasePagePath(rg, mi, db))
}

// ltrBackupID reads the backup a form names: an id from the page's list.
func ltrBackupID(id string) error {
	if _, err := resource.ParseLTRBackupID(id); err != nil {
		return &apiError{Status: http.StatusBadRequest, Code: "InvalidLongTermRetentionBackupResourceId", Message: "Pick a long-term retention backup from the list."}
	}
	return nil
}

// restoreLTRBackup restores one of the page's database's LTR backups as a new database of an
// instance of its region: fog sql midb ltr-backup restore's request (a database PUT with
// createMode RestoreLongTermRetentionBackup).
func (c *Console) restoreLTRBackup(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi := r.PathValue("rg"), r.PathValue("name")
	f := ltrRestoreForm{Backup: r.PostFormValue("backup"), Name: strings.TrimSpace(r.PostFormValue("name")), Target: r.PostFormValue("target")}
	fail := func(err error) { c.renderDatabase(w, r, a, statusOf(err), err, databaseForms{LTRRestore: f}) }
	if err := ltrBackupID(f.Backup); err != nil {
		fail(err)
		return
	}
	destRG, destMI, ok := strings.Cut(f.Target, "/")
	if !ok || destRG == "" || destMI == "" {
		destRG, destMI = rg, mi
	}
	if f.Name == "" {
		fail(&apiError{Status: http.StatusBadRequest, Code: "InvalidRestoreParameters", Message: "Enter the name of the new database the restore of the long-term retention backup creates."})
		return
	}
	op, err := a.c.BeginRestoreLongTermRetentionBackup(a.ctx, f.Backup, destRG, destMI, f.Name)
	if err != nil {
		fail(apiErr(err))
		return
	}
	redirectToOperation(w, r, op.First.Header, fmt.Sprintf("Restoring a long-term retention backup of %s as %s", r.PathValue("db"), f.Name), instancePagePath(destRG, destMI))
}

// deleteLTRBackup deletes one of the page's database's LTR backups, once the form's box
// confirms it (ltr-backup delete's --yes): fog sql midb ltr-backup delete's request.
func (c *Console) deleteLTRBackup(w http.ResponseWriter, r *http.Request, a *apiClient) {
	rg, mi, db := r.PathValue("rg"), r.PathValue("name"), r.PathValue("db")
	id := r.PostFormValue("backup")
	fail := func(err error) { c.renderDatabase(w, r, a, statusOf(err), err, databaseForms{}) }
	if err := ltrBackupID(id); err != nil {
		fail(err)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		fail(&apiError{Status: http.StatusBadRequest, Code: "ConfirmationMismatch", Message: "Deleting a long-term retention backup cannot be undone: tick the box beside Delete to confirm."})
		return
	}
	op, err := a.c.BeginDeleteLongTermRetentionBackup(a.ctx, id)
	if err != nil {
		fail(apiErr(err))
		return
	}
	redirectToOperation(w, r, op.First.Header, fmt.Sprintf("Deleting a long-term retention backup of %s", db), databasePagePath(rg, mi, db))
}
