package api

import (
	"net/http"

	"github.com/fogdb/fog/internal/arm"
	"github.com/fogdb/fog/internal/controller"
	"github.com/fogdb/fog/internal/resource"
)

const (
	// ltrPolicyPath is a database's long-term retention policies.
	ltrPolicyPath = dbPath + "/backupLongTermRetentionPolicies"
	// ltrLocation is a location's LTR backups, with or without a resource group (Azure
	// serves both).
	ltrLocation   = "/subscriptions/{sub}/providers/Microsoft.Sql/locations/{loc}"
	ltrLocationRG = "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/locations/{loc}"
	ltrInstance   = "/longTermRetentionManagedInstances/{name}"
	ltrDatabase   = ltrInstance + "/longTermRetentionDatabases/{db}"
	ltrBackups    = "/longTermRetentionManagedInstanceBackups"
)

// Operation URL kinds of LTR's long-running operations.
const (
	ltrPolicyOpKind = "managedInstanceLongTermRetentionPolicy"
	ltrBackupOpKind = "longTermRetentionManagedInstanceBackup"
)

// ltrRoutes serves long-term retention: a database's policy (GET, list, PUT as a
// long-running operation), and the LTR backups at Azure's location paths: listed per
// database, instance and location, read and deleted (a long-running operation).
func (s *Server) ltrRoutes(rt *arm.Router, v func(h func(w http.ResponseWriter, r *http.Request, ver string)) http.HandlerFunc) {
	rt.Handle("GET", ltrPolicyPath, v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListLongTermRetention(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"))
		s.reply(w, r, listOf(vs), aerr)
	}))
	rt.Handle("GET", ltrPolicyPath+"/{policy}", v(func(w http.ResponseWriter, r *http.Request, _ string) {
		p, aerr := s.c.GetLongTermRetention(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"), r.PathValue("policy"))
		s.reply(w, r, p, aerr)
	}))
	rt.Handle("PUT", ltrPolicyPath+"/{policy}", v(func(w http.ResponseWriter, r *http.Request, ver string) {
		var body resource.LongTermRetentionBody
		if aerr := decode(r, &body); aerr != nil {
			arm.WriteError(w, aerr)
			return
		}
		op, aerr := s.c.PutLongTermRetention(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"), r.PathValue("db"), r.PathValue("policy"), body)
		s.replyOp(w, r, ver, op, aerr)
	}))
	query := func(r *http.Request) controller.LTRQuery {
		return controller.LTRQuery{Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Location: r.PathValue("loc"),
			Instance: r.PathValue("name"), Database: r.PathValue("db")}
	}
	list := v(func(w http.ResponseWriter, r *http.Request, _ string) {
		vs, aerr := s.c.ListLTRBackups(r.Context(), query(r))
		s.reply(w, r, listOf(vs), aerr)
	})
	for _, base := range []string{ltrLocation, ltrLocationRG} {
		rt.Handle("GET", base+ltrBackups, list)
		rt.Handle("GET", base+ltrInstance+ltrBackups, list)
		rt.Handle("GET", base+ltrDatabase+ltrBackups, list)
		rt.Handle("GET", base+ltrDatabase+ltrBackups+"/{backup}", v(func(w http.ResponseWriter, r *http.Request, _ string) {
			b, aerr := s.c.GetLTRBackup(r.Context(), query(r), r.PathValue("backup"))
			s.reply(w, r, b, aerr)
		}))
		rt.Handle("DELETE", base+ltrDatabase+ltrBackups+"/{backup}", v(func(w http.ResponseWriter, r *http.Request, ver string) {
			op, aerr := s.c.DeleteLTRBackup(r.Context(), query(r), r.PathValue("backup"))
			s.replyOp(w, r, ver, op, aerr)
		}))
	}
}
