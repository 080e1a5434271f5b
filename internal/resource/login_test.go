package resource

import (
	"errors"
	"strings"
	"testing"

	"github.com/fogdb/fog/internal/fault"

	"github.com/fogdb/fog/internal/postgres"
)

// Fog's own roles in every instance, PostgreSQL's reserved names and prefixes and Azure SQL's
// system names are refused as administratorLogin in any case, with a message that says what
// to choose; ordinary names, including ones that merely contain a reserved word, are not.
func TestValidateLogin(t *testing.T) {
	reserved := []string{postgres.SystemUser, postgres.AdminRole, postgres.ReplicationUser, "fog_monitor", "Fog_Admin", "FOG_SYSTEM",
		"pg_monitor", "PG_Read_All_Data", "postgres", "POSTGRES", "public", "Public", "none", "current_user", "SESSION_USER", "current_role",
		"admin", "Administrator", "sa", "SA", "root", "dbmanager", "loginmanager", "dbo", "guest"}
	for _, l := range reserved {
		var aerr *fault.Error
		if !errors.As(validateLogin(l), &aerr) || aerr.Class != fault.BadRequest || aerr.Code != "InvalidLoginName" || !strings.Contains(aerr.Message, "choose another name") {
			t.Errorf("validateLogin(%q) = %v, want 400 InvalidLoginName saying to choose another name", l, aerr)
		}
	}
	for _, l := range []string{"miadmin", "fogadmin", "pgadmin", "sa_team", "admins", "postgres_app", "_x", "Dba"} {
		if aerr := validateLogin(l); aerr != nil {
			t.Errorf("validateLogin(%q) = %v, want nil", l, aerr)
		}
	}
}
