// Package repo holds repository-wide checks.
package repo

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs fails when a package has no "// Package x ..." doc comment.
func TestPackageDocs(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi os.FileInfo) bool { return true }, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		for name, pkg := range pkgs {
			documented := false
			for _, f := range pkg.Files {
				if f.Doc != nil && (strings.HasPrefix(f.Doc.Text(), "Package "+name) || strings.HasPrefix(f.Doc.Text(), "Command ")) {
					documented = true
				}
			}
			if !documented && !strings.HasSuffix(name, "_test") {
				t.Errorf("package %s (%s) has no package doc comment", name, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRegionsDoNotImportTheControlPlane: what runs on a region's machines (agent, gateway,
// the agents' link) reaches the control plane only through the store interface and the
// server's agent endpoint, never by importing the controller or the API.
func TestRegionsDoNotImportTheControlPlane(t *testing.T) {
	mod := "github.com/fogdb/fog/internal/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}",
		"../regional", "../agent", "../gateway", "../agentapi", "../lease", "../guard").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, banned := range []string{"controller", "api", "server", "cli", "daemon", "election"} {
			if p == mod+banned {
				t.Errorf("a region package depends on %s", p)
			}
		}
	}
}

// TestControlPlaneDoesNotImportPostgres: the control plane never reaches into PostgreSQL (nor
// runs pgBackRest) by itself (DESIGN.md); what it knows of PostgreSQL (WAL locations, the replication state
// agents report, slot names, the verifier it stores) comes from internal/pgtypes, which
// imports nothing of Fog's.
func TestControlPlaneDoesNotImportPostgres(t *testing.T) {
	mod := "github.com/fogdb/fog/internal/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}",
		"../controller", "../autofailover", "../api", "../resource", "../authz", "../instance", "../group", "../console", "../election").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == mod+"postgres" || p == mod+"pgbackrest" {
			t.Errorf("a control-plane package depends on %s", p)
		}
	}
	out, err = exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../pgtypes").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, mod) && p != mod+"pgtypes" {
			t.Errorf("pgtypes depends on %s; it must import nothing of Fog's", p)
		}
	}
}

// TestPgBackRestIsALeaf: the pgBackRest driver runs on the regions' machines and is called by
// package postgres and the agent; like pgtypes it imports nothing of Fog's, so that either can
// use it without a cycle and it can be tested alone.
func TestPgBackRestIsALeaf(t *testing.T) {
	mod := "github.com/fogdb/fog/internal/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../pgbackrest").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, mod) && p != mod+"pgbackrest" {
			t.Errorf("pgbackrest depends on %s; it must import nothing of Fog's", p)
		}
	}
}

// TestClientDoesNotImportTheServer: the API client reaches Fog only over HTTP; it shares the
// wire shapes (packages arm and resource), never the server's code.
func TestClientDoesNotImportTheServer(t *testing.T) {
	banImports(t, "the API client", "../fogclient", "controller", "api", "server", "store", "cli", "console", "agentapi", "authz")
}

// TestClientCommandsDoNotImportTheProcesses: the client commands (package cli) call Fog's API;
// what runs Fog (the server process, the regions, PostgreSQL, the DNS server and the process
// commands of package daemon) stays out of them, and so do the control plane and the API
// (they call the API through package fogclient). cmd/fog hands cli the process commands.
func TestClientCommandsDoNotImportTheProcesses(t *testing.T) {
	banImports(t, "the client commands", "../cli", "server", "daemon", "agent", "regional", "gateway", "postgres", "guard", "fogdns", "election",
		"controller", "engine", "api", "console")
}

// TestPolicyDoesNotImportTheService: the automatic failover policy is handed what it needs
// (the leader's engine, a way to start a forced failover, a probe); it depends on neither
// the controller that runs it nor the API.
func TestPolicyDoesNotImportTheService(t *testing.T) {
	banImports(t, "the automatic failover policy", "../autofailover", "controller", "api", "console", "server", "daemon", "cli", "postgres")
}

// TestBackupScheduleDoesNotImportTheService: the backup schedule is handed what it needs (the
// instances with their observed state, the ask, a clock); it depends on neither the
// controller that runs it nor the API, nor on the engine (the controller hands it the
// engine's transaction), nor on what runs pgBackRest.
func TestBackupScheduleDoesNotImportTheService(t *testing.T) {
	banImports(t, "the backup schedule", "../backupsched", "controller", "api", "console", "server", "daemon", "cli", "engine", "postgres", "pgbackrest", "agent")
}

// banImports fails when pkg depends, directly or not, on one of Fog's packages banned.
func banImports(t *testing.T, what, pkg string, banned ...string) {
	t.Helper()
	mod := "github.com/fogdb/fog/internal/"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, b := range banned {
			if p == mod+b {
				t.Errorf("%s depend on %s", what, p)
			}
		}
	}
}
